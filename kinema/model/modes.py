"""Tasks are conditioning masks: which streams a sample gives clean and which it generates (DESIGN's table).

Legend: C latent channels, t latent frames, k clean (given) latent frames,
T = 1 + 4(t-1) video frames, R = T - 1 action rows (row r belongs to frame r+1).

  mode               text          vision                 actions                  sound
  text2image         prompt        1 frame, generated     -                        -
  text2video         prompt        all generated          -                        generated (optional)
  image2video        prompt        frame 0 given          -                        generated (optional)
  video2video        prompt        first k given          -                        generated (optional)
  forward_dynamics   instruction   first k given          all given                -
  inverse_dynamics   instruction   all given              all generated            -
  policy             instruction   first k given          history given, rest gen  -

A clean latent frame k covers video frames up to 4(k-1), so "9 context
frames" = k = 3 for a 4x temporal tokenizer. In policy mode the actions that
led to the given frames are history (given); the ones after the last given
frame are the action chunk to generate, along with the future frames.
"""

from __future__ import annotations

import torch

from kinema.model.sequence import build

MODES = ("text2image", "text2video", "image2video", "video2video", "forward_dynamics", "inverse_dynamics", "policy")
ACTION_MODES = ("forward_dynamics", "inverse_dynamics", "policy")
SOUND_MODES = ("text2video", "image2video", "video2video")

# Training mixtures: per world family, (mode, weight). "all" is pre-training on every mode; "actions" is
# action post-training (as Cosmos 1's): only the worlds with actions, mostly forward dynamics.
MIXTURE = {
    "physics": (("text2image", 0.1), ("text2video", 0.25), ("image2video", 0.3), ("video2video", 0.35)),
    "tabletop": (("forward_dynamics", 0.45), ("inverse_dynamics", 0.2), ("policy", 0.2), ("video2video", 0.1),
                 ("text2video", 0.05)),
    "camera": (("forward_dynamics", 0.5), ("inverse_dynamics", 0.2), ("image2video", 0.2), ("text2video", 0.1)),
}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"model_mode: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode


def clean_frames(mode: str, t: int, k: int | None) -> int:
    """How many leading latent frames are given."""
    if mode in ("text2image", "text2video"):
        return 0
    if mode == "image2video":
        return 1
    if mode == "inverse_dynamics":
        return t
    if k is None or not 1 <= k < t:
        raise ValueError(f"{mode}: expected 1 <= clean latent frames < {t}, got {k}")
    return k


def plan_tokens(config, mode: str, streams: dict, *, text=(), k: int | None = None, sound: bool = False):
    """The packed tokens of one sample. streams: vision [C, t, h, w], audio [Ca, Na] or None, actions [T, A]
    or None with domain (slot) and fps, and optionally keys: the keyframes uint8 [j, H, W, 3] of the first j
    latent frames (the given frames' pixels, sequence.build); values of generated parts are their targets
    (training) or ignored."""
    check_mode(mode)
    vision = streams["vision"]
    if mode == "text2image":
        vision = vision[:, :1]
    t = vision.shape[1]
    k = clean_frames(mode, t, k)
    vision_gen = torch.arange(t) >= k
    kw = {}
    if mode in ACTION_MODES:
        a = streams.get("actions")
        if a is None:
            raise ValueError(f"{mode} needs actions; this sample has none")
        timing = config.embodiments[streams["domain"]].timing
        rows = a[:-1] if timing == "after" else a[1:]  # R = T - 1 rows, row r belongs to frame r + 1
        if mode == "forward_dynamics":
            gen = torch.zeros(len(rows), dtype=torch.bool)
        elif mode == "inverse_dynamics":
            gen = torch.ones(len(rows), dtype=torch.bool)
        else:  # policy: rows whose frame is already seen are history
            seen = config.temporal_compression * (k - 1)
            gen = torch.arange(1, len(rows) + 1) > seen
        kw = dict(actions=rows, action_gen=gen, domain=streams["domain"])
    if sound and mode in SOUND_MODES and streams.get("audio") is not None:
        kw.update(audio=streams["audio"], audio_gen=True)
    keys = streams.get("keys")
    return build(config, text=text, vision=vision, vision_gen=vision_gen, fps=streams["fps"],
                 keys=None if keys is None else keys[:t], **kw)


ACTION_MIXTURE = {
    "tabletop": (("forward_dynamics", 0.65), ("inverse_dynamics", 0.25), ("policy", 0.1)),
    "camera": (("forward_dynamics", 0.7), ("inverse_dynamics", 0.3)),
}
MIXTURES = {"all": MIXTURE, "actions": ACTION_MIXTURE}


def check_mode_weights(mode_weights: dict | None, mixture: str) -> dict:
    """Validate per-mode weight multipliers (modes this mixture trains, weights >= 0 leaving some mode drawn)."""
    mode_weights = dict(mode_weights or {})
    trained = {m for family in MIXTURES[mixture].values() for m, _ in family}
    unknown = set(mode_weights) - trained
    if unknown or any(not w >= 0 for w in mode_weights.values()):
        raise ValueError(f"mode weights: expected MODE=WEIGHT >= 0 with modes of the {mixture!r} mixture "
                         f"({', '.join(sorted(trained))}), got {mode_weights}")
    for family, table in MIXTURES[mixture].items():
        if sum(w * mode_weights.get(m, 1.0) for m, w in table) <= 0:
            raise ValueError(f"mode weights {mode_weights}: every mode of world family {family!r} has weight 0")
    return mode_weights


def sample_task(family: str, t: int, has_audio: bool, generator=None, mixture: str = "all",
                mode_weights: dict | None = None) -> dict:
    """Draw a training task for a clip of this family: mode, clean frames k, text choice, sound, dropout.
    mode_weights multiply the mixture's weights per mode (check_mode_weights)."""
    modes, weights = zip(*MIXTURES[mixture][family])
    weights = [w * (mode_weights or {}).get(m, 1.0) for m, w in zip(modes, weights)]
    mode = modes[int(torch.multinomial(torch.tensor(weights), 1, generator=generator))]
    u = torch.rand(4, generator=generator).tolist()
    k = 1 if u[0] < 0.35 else 3 if u[0] < 0.7 else int(torch.randint(1, t, (1,), generator=generator))
    if mixture == "actions":  # from one frame the motion is not in the context: only the actions tell it
        k = 1 if u[0] < 0.5 else 3
    text = "caption" if mode in ("text2image", "text2video", "image2video", "video2video") and u[1] < 0.7 else "task"
    return dict(mode=mode, k=min(k, t - 1), text=text, sound=has_audio and u[2] < 0.5, drop_text=u[3])
