"""One packed token sequence per sample: what each token is, where it sits, who attends whom.

Legend: L tokens, V value width (cfg.value_dim), C latent channels, t latent
frames, h/w latent rows/columns, gh/gw = h/ph, w/pw patch grid, Ca audio
channels, Na audio latent frames, R action rows, A action dims.

Segments, in order: text (BPE ids) | vision (t·gh·gw patches, frame-major) |
audio (Na / audio_patch tokens) | actions (R rows, row r belongs to frame r+1).
Each token is given (clean context) or generated (noisy). Positions (t, h, w),
from REFERENCE §4/§6:

  text      (p, p, p)                  p = 0 .. n-1
  vision    (T0 + time, row, column)   time = seconds · positions_per_second
  audio     (T0 + time, 0, 0)          at the centre of its audio frames
  action    (T0 + time, 0, 0)          at the frame it belongs to
  T0 = n + text_margin                 the clip's time zero, after the text

With 16 fps video and a 4x temporal tokenizer, one temporal position is one
latent frame (4 video frames); at 8 fps it is still a quarter second.
Groups (see mot.py): text token i -> i; clean tokens of latent frame k (and
the audio / actions inside its time) -> n + 1 + k; noisy tokens -> NOISY.
`cond` [cfg.cond_dim] gives each noisy vision token of latent frame j the
patch of the last given latent frame g at the same (row, column) (Stable Video
Diffusion's concatenated conditioning frame), then, from the given action rows,
their sum over the video frames from g's last to j's last (for delta actions:
the displacement since the given frame), the row of j's last frame (for pose
actions: where it is now) and, with cfg.cond_rows = 3, the row of g's last
frame (pose actions: where it was, so "now - then" is one linear map; without
it the generator must fetch the old pose from the context by attention). Zero
when nothing is given (zero is the mean of standardised values). So "what was there" and "how far it moved" are inputs the
generator reads directly, not sums it must learn to do with attention.

With cfg.pixel_cell, a clean vision token given its clip's keyframes (a reasoner
sequence's video, or a generator sequence's given frames) carries after its
latent patch the pixels it covers in its latent frame's last video frame,
average-pooled to cells and scaled to [-1, 1] (`pixel_patches`): the reasoner
weights' own view of the image. Noisy tokens never carry pixels (there are none
yet); a token without them holds zero, which the pixel input maps to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from kinema.model.mot import NOISY

PAD, TEXT, VISION, AUDIO, ACTION = range(5)


@dataclass
class Tokens:
    """A sample ([L, ...]) or a padded batch ([B, L, ...])."""

    kind: torch.Tensor    # int64, PAD | TEXT | VISION | AUDIO | ACTION
    gen: torch.Tensor     # bool, noisy (generated) token
    group: torch.Tensor   # int64, attention group
    pos: torch.Tensor     # float32 [..., 3] (t, h, w)
    text: torch.Tensor    # int64 text id (0 elsewhere)
    value: torch.Tensor   # float32 [..., V] clean value of a continuous token (targets for noisy ones)
    dims: torch.Tensor    # int64, how many leading entries of value are real
    domain: torch.Tensor  # int64, embodiment slot of an action token
    index: torch.Tensor   # int64, the token's place inside its segment (to unpack outputs)
    target: torch.Tensor  # int64, the text id the reasoner must predict from this token (-1: not scored)
    cond: torch.Tensor    # float32 [..., cond_dim], on a noisy vision token: the given frame and actions since (above)
    world: torch.Tensor   # int64, on a question's tokens: which reasoner adapter it takes (0: the shared one;
                          # k: the k-th world of config.reason_own, its own)
    hold: torch.Tensor    # bool, on a scored answer token: the starting weights' answer is kept there where it was
                          # right (train --reason-keep; --reason-keep-tasks picks the tasks)

    @property
    def valid(self) -> torch.Tensor:
        return self.kind != PAD

    def to(self, device) -> "Tokens":
        return Tokens(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def select(self, keep: torch.Tensor) -> "Tokens":
        """The tokens of one sample where keep [L] is True, in order."""
        return Tokens(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    def __len__(self) -> int:
        return self.kind.shape[-1]


def for_world(cfg, tok: Tokens, world: str | None) -> Tokens:
    """A question's tokens marked with the world its video shows: a world with a reasoner adapter of its own
    (cfg.reason_own) is asked through it, any other (or None: not said) through the shared one."""
    tok.world = torch.full_like(tok.kind, cfg.reason_slot(world))
    return tok


def patchify(latent: torch.Tensor, patch) -> torch.Tensor:
    """[C, t, h, w] -> [t·gh·gw, C·ph·pw] (frame-major, then rows, then columns)."""
    C, t, h, w = latent.shape
    ph, pw = patch
    if h % ph or w % pw:
        raise ValueError(f"latent grid {h}x{w} is not divisible by the patch {ph}x{pw}")
    x = latent.reshape(C, t, h // ph, ph, w // pw, pw).permute(1, 2, 4, 0, 3, 5)
    return x.reshape(t * (h // ph) * (w // pw), C * ph * pw)


def latent_frame_ends(t: int, tc: int, window: int) -> torch.Tensor:
    """The video frame each of t latent frames has seen last [t] (int64): 0, tc, 2·tc, ... within a window. The
    video tokenizer encodes a long clip in independent windows of `window` frames, each starting with a key
    latent of its own first frame (tokenize/video.py), so in windows of 33 latent frame 9 is frame 33 alone,
    10 ends at 37, and so on (a clip padded at its end: its last latent frame ends past the last real frame)."""
    per = 1 + (window - 1) // tc
    k = torch.arange(t)
    return (k // per) * window + (k % per) * tc


def keyframes(frames, tc: int, window: int | None = None):
    """A clip's frames [T, H, W, 3] -> the last video frame each latent frame has seen [t, H, W, 3]
    (latent_frame_ends; a 49-frame clip in windows of 33: frames 0, 4, .., 32, 33, 37, 41, 45, 48)."""
    T = len(frames)
    window = window or T
    return frames[latent_frame_ends(latent_frame_count(T, tc, window), tc, window).clamp(max=T - 1).numpy()]


def latent_frame_count(T: int, tc: int, window: int) -> int:
    """How many latent frames the video tokenizer makes of T frames in windows of `window`."""
    return sum(1 + -(-(min(window, T - s) - 1) // tc) for s in range(0, T, window))


def pixel_patches(cfg, keys: torch.Tensor) -> torch.Tensor:
    """keyframes uint8 [t, H, W, 3] -> [t·gh·gw, cfg.pixel_dim] in [-1, 1]: each vision token's pixels, pooled to
    cfg.pixel_cell cells (token order as patchify: frame-major, then rows, then columns)."""
    c, (ph, pw), sc = cfg.pixel_cell, cfg.patch, cfg.spatial_compression
    t, H, W, _ = keys.shape
    if keys.dtype != torch.uint8 or keys.ndim != 4 or keys.shape[-1] != 3 or H % (ph * sc) or W % (pw * sc):
        raise ValueError(f"keyframes: expected uint8 [t, H, W, 3] with H, W multiples of {ph * sc}x{pw * sc}, got "
                         f"{keys.dtype} {tuple(keys.shape)}")
    x = torch.nn.functional.avg_pool2d(keys.permute(0, 3, 1, 2).float(), c) / 127.5 - 1  # [t, 3, H/c, W/c]
    a, b = ph * sc // c, pw * sc // c
    x = x.reshape(t, 3, H // (ph * sc), a, W // (pw * sc), b).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, 3 * a * b)


def unpatchify(tokens: torch.Tensor, C: int, t: int, h: int, w: int, patch) -> torch.Tensor:
    """[t·gh·gw, C·ph·pw] -> [C, t, h, w]"""
    ph, pw = patch
    x = tokens.reshape(t, h // ph, w // pw, C, ph, pw).permute(3, 0, 1, 4, 2, 5)
    return x.reshape(C, t, h, w)


def build(cfg, *, text=(), vision=None, vision_gen=None, fps: float = 16.0, audio=None, audio_gen: bool = False,
          actions=None, action_gen=None, domain: int = 0, keys=None) -> Tokens:
    """One sample's tokens. vision [C, t, h, w] and vision_gen bool [t]; audio [Ca, Na]; actions [R, A] with
    action_gen bool [R]. Values are standardised already; noisy entries hold their x0 (training) or anything.
    keys: keyframes uint8 [j, H, W, 3] of the first j <= t latent frames, read only with cfg.pixel_cell: the
    pixels of the given ones among them (pixel_patches)."""
    V, tc = cfg.value_dim, cfg.temporal_compression
    pps = cfg.positions_per_second
    text = list(text)[: cfg.max_text_tokens]
    n = len(text)
    T0 = n + cfg.text_margin if n else 0.0
    W = cfg.cond_dim
    parts = []  # (kind, gen [N], group [N], pos [N, 3], ids [N], value [N, V], dims, index [N], cond [N, W])

    def frame_group(frame: torch.Tensor) -> torch.Tensor:  # video frame -> group of the latent frame holding it
        return n + 1 + torch.ceil(frame / tc).long()

    def add(kind, gen, group, pos, value=None, dims=0, ids=None, cond=None):
        N = len(gen)
        v, cv = torch.zeros(N, V), torch.zeros(N, W)
        if value is not None:
            v[:, : value.shape[1]] = value
        if cond is not None:
            cv[:, : cond.shape[1]] = cond
        group = torch.where(gen, torch.full_like(group, NOISY), group)
        ids = torch.zeros(N, dtype=torch.long) if ids is None else ids
        parts.append((kind, gen, group, pos, ids, v, dims, torch.arange(N), cv))

    if n:
        p = torch.arange(n, dtype=torch.float32)
        add(TEXT, torch.zeros(n, dtype=torch.bool), torch.arange(n), p[:, None].expand(n, 3),
            ids=torch.tensor(text, dtype=torch.long))
    if vision is not None:
        C, t, h, w = vision.shape
        ph, pw = cfg.patch
        gh, gw = h // ph, w // pw
        gen = torch.as_tensor(vision_gen, dtype=torch.bool)
        if gen.shape != (t,):
            raise ValueError(f"vision_gen: expected one flag per latent frame ({t}), got {tuple(gen.shape)}")
        k = torch.arange(t).repeat_interleave(gh * gw)
        rows = torch.arange(gh).repeat_interleave(gw).repeat(t)
        cols = torch.arange(gw).repeat(t * gh)
        time = T0 + (k * tc / fps) * pps
        pos = torch.stack([time, rows.float(), cols.float()], -1)
        patches = patchify(vision.float(), cfg.patch)
        cond = given_frame(patches, gen, gh * gw)
        if actions is not None:
            moved = actions_since(cfg, actions, action_gen, gen).repeat_interleave(gh * gw, 0)  # [t·gh·gw, cond_rows·A]
            cond = torch.cat([cond, moved], 1)
        value = patches
        if cfg.pixel_cell and keys is not None:
            keys = torch.as_tensor(keys)
            if len(keys) > t:
                raise ValueError(f"keyframes: expected at most one per latent frame ({t}), got {len(keys)}")
            pix = torch.zeros(len(patches), cfg.pixel_dim)
            pix[: len(keys) * gh * gw] = pixel_patches(cfg, keys)
            pix[gen[k]] = 0  # a frame still to be generated has no pixels yet
            value = torch.cat([patches, pix], 1)
        add(VISION, gen[k], n + 1 + k, pos, value, cfg.vision_dim, cond=cond)
    if audio is not None:
        tokens, seconds = audio_tokens(cfg, audio)
        N = len(tokens)
        pos = torch.stack([T0 + seconds * pps, torch.zeros(N), torch.zeros(N)], -1)
        add(AUDIO, torch.full((N,), bool(audio_gen)), frame_group(seconds * fps), pos, tokens, cfg.audio_dim)
    if actions is not None:
        R, A = actions.shape
        gen = torch.as_tensor(action_gen, dtype=torch.bool)
        if gen.shape != (R,):
            raise ValueError(f"action_gen: expected one flag per action row ({R}), got {tuple(gen.shape)}")
        frame = torch.arange(1, R + 1, dtype=torch.float32)  # row r belongs to frame r + 1
        pos = torch.stack([T0 + frame / fps * pps, torch.zeros(R), torch.zeros(R)], -1)
        add(ACTION, gen, frame_group(frame), pos, actions.float(), A)
    if not parts:
        raise ValueError("a sample needs at least one segment (text, vision, audio or actions)")
    kinds = torch.cat([torch.full((len(p[1]),), p[0]) for p in parts])
    dims = torch.cat([torch.full((len(p[1]),), p[6]) for p in parts])
    dom = torch.where((kinds == ACTION) | (kinds == VISION), domain, 0) if actions is not None else torch.zeros_like(kinds)
    return Tokens(kind=kinds, gen=torch.cat([p[1] for p in parts]), group=torch.cat([p[2] for p in parts]),
                  pos=torch.cat([p[3] for p in parts]).float(), text=torch.cat([p[4] for p in parts]),
                  value=torch.cat([p[5] for p in parts]), dims=dims, domain=dom, index=torch.cat([p[7] for p in parts]),
                  target=torch.full((len(kinds),), -1), cond=torch.cat([p[8] for p in parts]),
                  world=torch.zeros(len(kinds), dtype=torch.long), hold=torch.zeros(len(kinds), dtype=torch.bool))


def audio_tokens(cfg, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """audio [Ca, Na] -> (tokens [Na/ap, Ca·ap] (zero-padded to whole patches), each token's centre in seconds [Na/ap])."""
    Ca, Na = audio.shape
    ap = cfg.audio_patch
    a = torch.nn.functional.pad(audio.float(), (0, -Na % ap))
    tokens = a.reshape(Ca, -1, ap).permute(1, 0, 2).reshape(-1, Ca * ap)
    return tokens, (torch.arange(len(tokens)) * ap + ap / 2) / cfg.audio_rate


def actions_since(cfg, actions: torch.Tensor, action_gen, vision_gen: torch.Tensor) -> torch.Tensor:
    """actions [R, A] (row r belongs to frame r + 1), action_gen [R], vision_gen [t] -> [t, cond_rows·max_action_dim]:
    for a generated latent frame j after given frame g, the sum of the given rows of video frames
    tc·g + 1 .. tc·j, the row of frame tc·j (zero when it is generated) and, with cond_rows = 3, the row of
    frame tc·g (zero for frame 0, which has no row); zero for given frames."""
    tc, A = cfg.temporal_compression, cfg.max_action_dim
    rows = torch.zeros(len(actions), A)
    rows[:, : actions.shape[1]] = actions.float()
    rows[torch.as_tensor(action_gen, dtype=torch.bool)] = 0  # rows still to be generated tell nothing
    out = torch.zeros(len(vision_gen), cfg.cond_rows * A)
    last = None
    for j in range(len(vision_gen)):
        if not vision_gen[j]:
            last = j
        elif last is not None:
            seg = rows[tc * last : tc * j]  # frames tc·last + 1 .. tc·j
            out[j, :A] = seg.sum(0)
            if tc * j - 1 < len(rows):
                out[j, A : 2 * A] = rows[tc * j - 1]
            if cfg.cond_rows == 3 and 0 < tc * last <= len(rows):
                out[j, 2 * A :] = rows[tc * last - 1]
    return out


def given_frame(patches: torch.Tensor, gen: torch.Tensor, per_frame: int) -> torch.Tensor:
    """patches [t·gh·gw, P] and gen [t] -> [t·gh·gw, P]: for a generated frame, the last given frame before it
    (zero when none); zero on given frames."""
    frames = patches.reshape(len(gen), per_frame, -1)
    out = torch.zeros_like(frames)
    last = None
    for k in range(len(gen)):
        if not gen[k]:
            last = k
        elif last is not None:
            out[k] = frames[last]
    return out.reshape_as(patches)


def build_interleaved(cfg, segments, scored=()) -> Tokens:
    """The reasoner's sequence: text and clean video interleaved in order, all context (causal).

    segments: ("text", ids) or ("vision", latent [C, t, h, w], fps[, audio [Ca, Na] or None[, keyframes uint8
    [t, H, W, 3] or None]]); the keyframes are read only with cfg.pixel_cell (pixel_patches). scored: for
    each text segment index in this set, every one of its ids is a target, predicted from the token before it.
    Positions follow REFERENCE §6: text (p, p, p) consecutive; a vision segment starts text_margin
    after the text before it, its time in seconds · positions_per_second, and the text after it
    restarts at ceil(max id) + 1. Groups increase along the sequence (a latent frame shares one).
    A video's sound (model values at cfg.audio_rate, time zero at its first frame) joins it as build()
    places audio: at (T0 + time, 0, 0), in the group of the latent frame holding its time, each latent
    frame's audio tokens right after its patches.
    """
    V, tc, pps = cfg.value_dim, cfg.temporal_compression, cfg.positions_per_second
    kinds, groups, pos, ids, values, dims, index, target = [], [], [], [], [], [], [], []
    p, g = 0.0, 0  # next text position, next group
    last = None  # the previous token's slot in `target`, which predicts the next text id
    for s, seg in enumerate(segments):
        if seg[0] == "text":
            x = torch.as_tensor(seg[1], dtype=torch.long)
            n = len(x)
            if not n:
                continue
            kinds.append(torch.full((n,), TEXT)), ids.append(x), values.append(torch.zeros(n, V))
            groups.append(torch.arange(g, g + n)), pos.append((p + torch.arange(n).float())[:, None].expand(n, 3))
            dims.append(torch.zeros(n, dtype=torch.long)), index.append(torch.arange(n))
            t = torch.full((n,), -1)
            if s in scored:
                t[:-1] = x[1:]
                if last is not None:
                    target[last[0]][last[1]] = x[0]
            target.append(t)
            last = (len(target) - 1, n - 1)  # predicts the first id of a scored text segment right after
            p, g = p + n, g + n
        elif seg[0] == "vision":
            latent, fps = seg[1], float(seg[2])
            C, t, h, w = latent.shape
            ph, pw = cfg.patch
            gh, gw = h // ph, w // pw
            k = torch.arange(t).repeat_interleave(gh * gw)
            T0 = p + cfg.text_margin
            ends = latent_frame_ends(t, tc, cfg.tokenizer_window).float()  # the time of a latent frame: its last frame
            time = T0 + (ends[k] / fps) * pps
            rows = torch.arange(gh).repeat_interleave(gw).repeat(t).float()
            cols = torch.arange(gw).repeat(t * gh).float()
            N = len(k)
            v = torch.zeros(N, V)
            v[:, : cfg.vision_dim] = patchify(latent.float(), cfg.patch)
            keys = seg[4] if len(seg) > 4 else None
            if cfg.pixel_cell and keys is not None:
                if len(keys) != t:
                    raise ValueError(f"keyframes: expected one per latent frame ({t}), got {len(keys)}")
                v[:, cfg.vision_dim : cfg.vision_dim + cfg.pixel_dim] = pixel_patches(cfg, torch.as_tensor(keys))
            seg_kind, seg_group = torch.full((N,), VISION), g + k
            seg_pos, seg_dims, seg_index = torch.stack([time, rows, cols], -1), torch.full((N,), cfg.vision_dim), torch.arange(N)
            audio = seg[3] if len(seg) > 3 else None
            if audio is not None:
                a, secs = audio_tokens(cfg, audio)
                Na = len(a)
                va = torch.zeros(Na, V)
                va[:, : cfg.audio_dim] = a
                frame = torch.searchsorted(ends, secs * fps).clamp(max=t - 1)  # the latent frame holding it
                apos = torch.stack([T0 + secs * pps, torch.zeros(Na), torch.zeros(Na)], -1)
                order = torch.argsort(torch.cat([seg_group, g + frame]), stable=True)  # frame by frame
                seg_kind = torch.cat([seg_kind, torch.full((Na,), AUDIO)])[order]
                seg_group = torch.cat([seg_group, g + frame])[order]
                seg_pos = torch.cat([seg_pos, apos])[order]
                seg_dims = torch.cat([seg_dims, torch.full((Na,), cfg.audio_dim)])[order]
                seg_index = torch.cat([seg_index, torch.arange(Na)])[order]
                v = torch.cat([v, va])[order]
            M = len(seg_kind)
            kinds.append(seg_kind), ids.append(torch.zeros(M, dtype=torch.long))
            values.append(v), groups.append(seg_group), pos.append(seg_pos)
            dims.append(seg_dims), index.append(seg_index)
            target.append(torch.full((M,), -1))
            last = None  # text right after video is not predicted from the video's last patch
            p, g = math.ceil(float(seg_pos[:, 0].max())) + 1.0, g + t
        else:
            raise ValueError(f"segment {s}: expected kind 'text' or 'vision', got {seg[0]!r}")
    if not kinds:
        raise ValueError("a reasoner sequence needs at least one non-empty segment")
    kinds = torch.cat(kinds)
    L = len(kinds)
    return Tokens(kind=kinds, gen=torch.zeros(L, dtype=torch.bool), group=torch.cat(groups), pos=torch.cat(pos).float(),
                  text=torch.cat(ids), value=torch.cat(values), dims=torch.cat(dims), domain=torch.zeros(L, dtype=torch.long),
                  index=torch.cat(index), target=torch.cat(target), cond=torch.zeros(L, cfg.cond_dim),
                  world=torch.zeros(L, dtype=torch.long), hold=torch.zeros(L, dtype=torch.bool))


def collate(samples: list[Tokens], multiple: int = 16) -> Tokens:
    """Pad samples to the longest, rounded up to `multiple`: [B, L, ...]; padding is kind PAD (never
    attended, never scored). Few distinct shapes keep CPU kernels' caches and the allocator from growing."""
    L = max(len(s) for s in samples)
    L = -(-L // multiple) * multiple
    out = {}
    for f in fields(Tokens):
        xs = [getattr(s, f.name) for s in samples]
        pad = torch.full((len(xs), L, *xs[0].shape[1:]), -1 if f.name == "target" else 0, dtype=xs[0].dtype)
        for i, x in enumerate(xs):
            pad[i, : len(x)] = x
        out[f.name] = pad
    return Tokens(**out)


def segment_values(tok: Tokens, value: torch.Tensor, kind: int) -> torch.Tensor:
    """The rows of value [L, V] (one sample) that belong to segment `kind`, in segment order, real dims only."""
    keep = tok.kind == kind
    rows = value[keep][torch.argsort(tok.index[keep])]
    d = int(tok.dims[keep][0]) if keep.any() else 0
    return rows[:, :d]


def audio_frames(tokens: torch.Tensor, cfg, Na: int) -> torch.Tensor:
    """[Na/ap, Ca·ap] -> [Ca, Na]"""
    ap = cfg.audio_patch
    return tokens.reshape(-1, cfg.audio_channels, ap).permute(1, 0, 2).reshape(cfg.audio_channels, -1)[:, :Na]


def latent_frames(num_frames: int, tc: int) -> int:
    """Latent frames of a 1 + k·tc frame clip."""
    if num_frames < 1 or (num_frames - 1) % tc:
        raise ValueError(f"num_frames: the tokenizer takes 1 + k·{tc} frames (1, {1 + tc}, {1 + 2 * tc}, ...), got {num_frames}")
    return 1 + (num_frames - 1) // tc


def audio_latent_frames(num_frames: int, fps: float, rate: float) -> int:
    return math.ceil(num_frames / fps * rate - 1e-6)
