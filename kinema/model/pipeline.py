"""Sampling the world model: from given frames, actions and a prompt to generated frames, actions and sound.

Legend: T clip frames (1 + 4k), Tc given frames, k given latent frames,
C latent channels, t latent frames, h/w latent grid, L tokens, V value width,
R action rows, A action dims, N audio samples.

One call of `Pipeline.run` builds the packed tokens of the requested mode
(modes.py), encodes the clean context once into a K/V cache, and lets the
sampler (kinema.diffusion) denoise only the noisy tokens against that cache.
Classifier-free guidance batches the conditional and the unconditional
(prompt dropped) sequence together: x0 = x0_u + g (x0_c - x0_u), so g = 1 is
plain conditional sampling and costs one sequence, not two. Action guidance
does the same for forward dynamics with the actions dropped (video2video on
the same given frames, a mode the model trains on): x0 = x0_c + (g_a - 1)
(x0_c - x0_v), which amplifies what the actions change; the two compose.
`rollout` makes clips longer than the model's window autoregressively: each
chunk is conditioned on the last 9 frames made so far. With given frames, the
last one's tokenizer round-trip error is added to every generated frame
(kinema.model.carry; `carry=False` shows the decoder's frames as they are).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kinema.diffusion import sample
from kinema.model import embodiments as emb
from kinema.model.carry import carry_default, carry_detail, check_gate
from kinema.model.config import KIND, WorldModelConfig
from kinema.model.data import audio_from_model, audio_to_model
from kinema.model.modes import ACTION_MODES, check_mode, plan_tokens
from kinema.model.sequence import (ACTION, AUDIO, VISION, audio_frames, audio_latent_frames, collate, keyframes,
                                   latent_frames, segment_values, unpatchify)
from kinema.model.train import schedule_for
from kinema.model.world_model import WorldModel
from kinema.tokenize.data import to_model, to_uint8

DEFAULT_STEPS = {"text2image": 50, **{m: 30 for m in ACTION_MODES}}  # others: 35 (REFERENCE §4)
DEFAULT_GUIDANCE = {"text2image": 3.0, "text2video": 3.0}  # others: 1 (no CFG), as Cosmos 3's action modes
# Where the future starts from the last given frame held still (samplers.sample's strength; others: 1, pure noise).
# video2video: object IoU of physics alignment 0.277 -> 0.323 at N = 20. Not forward dynamics: it halved what the
# actions change (BENCHMARKS.md, "Starting from the last given frame").
DEFAULT_STRENGTH = {"video2video": 0.7}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device: expected auto, cpu or cuda, got {name!r}")
    return torch.device(name)


@dataclass
class _Plan:
    """One checked request, ready to sample: its tokens, guides and what unpacking its values needs."""

    tok: object
    guides: list
    vision: torch.Tensor
    k: int
    T: int
    streams: dict
    fps: float
    num_steps: int
    shift: float | None
    sampler: str
    strength: float
    given: np.ndarray | None  # uint8 [Tc, H, W, 3] the given frames (None: none)
    carry: bool  # the last given frame's detail carried into the generated frames (kinema.model.carry)
    carry_gate: float | None  # its gate (None: the module's default)


class Pipeline:
    def __init__(self, model: WorldModel, text, video_tokenizer, audio_tokenizer, *, device="cpu", dtype="bf16"):
        if dtype not in ("fp32", "bf16"):
            raise ValueError(f"dtype: expected fp32 or bf16, got {dtype!r}")
        self.device = pick_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.config: WorldModelConfig = model.config
        self.text, self.video_tokenizer, self.audio_tokenizer = text, video_tokenizer, audio_tokenizer
        for m in (video_tokenizer, audio_tokenizer):
            if m is not None:
                m.to(self.device).eval()
        self.dtype = dtype
        c = self.config
        self._lat = (torch.tensor(c.latent_mean).view(-1, 1, 1, 1), torch.tensor(c.latent_std).view(-1, 1, 1, 1))
        self._aud = (torch.tensor(c.audio_mean).view(-1, 1), torch.tensor(c.audio_std).view(-1, 1))

    @classmethod
    def from_pretrained(cls, path, *, device="auto", dtype="bf16", video_tokenizer=None, audio_tokenizer=None):
        """A checkpoint folder (config.json, model.safetensors, tokenizer.json); the video and audio
        tokenizers default to the folders its config names, beside it."""
        from kinema.tokenize.load import load_tokenizer
        from kinema.tokenize.text import TextTokenizer
        from kinema.train.checkpoint import load_pretrained, load_state_strict

        path = Path(path)
        raw, state = load_pretrained(path, expected_kind=KIND)
        try:
            config = WorldModelConfig.from_dict(raw["model"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"checkpoint {path}: its config does not describe a world model: {e}") from e
        model = WorldModel(config)
        load_state_strict(model, {k: v.float() for k, v in state.items()}, where=str(path))
        vt = load_tokenizer(video_tokenizer or path.parent / config.video_tokenizer, "video_tokenizer")
        at = load_tokenizer(audio_tokenizer or path.parent / config.audio_tokenizer, "audio_tokenizer")
        return cls(model, TextTokenizer.load(path), vt, at, device=device, dtype=dtype)

    # ------------------------------------------------------------ streams <-> model values

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bf16")

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [Tc, H, W, 3] (Tc = 1 + 4j) -> standardised latents [C, k, h, w]."""
        with self._autocast():
            z = self.video_tokenizer.encode(to_model(frames)[None].to(self.device))[0].float().cpu()
        return (z - self._lat[0]) / self._lat[1]

    @torch.no_grad()
    def encode_sound(self, wav: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> torch.Tensor:
        """Mono f32 [N] at the audio tokenizer's rate -> model values [Ca, Na]: the sound of num_frames video
        frames at fps (cut, or padded with silence)."""
        sr = self.audio_tokenizer.cfg.sample_rate
        if int(sample_rate) != sr:
            raise ValueError(f"audio: expected {sr} Hz mono, got {sample_rate} Hz")
        n = round(num_frames / fps * sr)
        x = np.zeros(n, np.float32)
        piece = np.asarray(wav, np.float32).reshape(-1)[:n]
        x[: len(piece)] = piece
        with self._autocast():
            a = self.audio_tokenizer.encode(torch.from_numpy(x)[None].clamp(-1, 1).to(self.device))[0].float().cpu()
        Na = audio_latent_frames(num_frames, fps, self.config.audio_rate)
        return audio_to_model(a[:, :Na], *self._aud)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, num_frames: int) -> np.ndarray:
        z = z * self._lat[1] + self._lat[0]
        with self._autocast():
            video = self.video_tokenizer.decode(z[None].to(self.device), num_frames=num_frames)[0]
        return to_uint8(video)

    def _domain(self, domain_name, action_names, dim, timing=None) -> int:
        if domain_name:
            slot = emb.index(self.config.embodiments, domain_name)
        else:
            slot = emb.find(self.config.embodiments, action_names, dim, timing)
        e = self.config.embodiments[slot]
        if dim is not None and dim != e.dim:
            raise ValueError(f"actions have {dim} numbers per row; embodiment {e.name!r} takes {e.dim}")
        return slot

    # ------------------------------------------------------------ one clip

    @torch.no_grad()
    def run(self, mode: str, *, seed: int = 0, progress: bool = False, **request) -> dict:
        """-> {"frames": uint8 [T, H, W, 3], "actions": f32 [R, A] or None, "audio": f32 [N] or None,
               "context_frames": Tc}. request: what `_plan` takes (num_frames, context uint8 [Tc, H, W, 3], actions
        raw [T, A] (row t of frame t), domain_name, action_names, prompt, fps, size, guidance, num_steps, shift,
        sampler, sound, action_guidance, strength, carry). strength < 1 (modes with given frames): the future
        starts as the last given latent frame, held still, noised to the level where the last
        round(strength * num_steps) steps begin (samplers.sample); None: the mode's default (DEFAULT_STRENGTH), 1
        where nothing is left to generate. carry (None: on wherever given frames start a future): the given frames
        come back as given and the last one's round-trip error is added to the generated ones (kinema.model.carry)."""
        p = self._plan(mode, **request)
        values = self._denoise(p.tok, p.guides, num_steps=p.num_steps, shift=p.shift, sampler=p.sampler, seed=seed,
                               strength=p.strength, progress=progress)
        return self._unpack(mode, p, values)

    def infer_actions(self, context: np.ndarray, *, draws: int, **request) -> np.ndarray:
        """Actions as a point estimate: the mean of `action_draws` (the same arguments) -> f32 [T-1, A]."""
        return self.action_draws(context, draws=draws, **request).mean(0)

    def action_draws(self, context: np.ndarray, *, draws: int, seed: int = 0, num_steps: int = 1,
                     mode: str = "inverse_dynamics", **request) -> np.ndarray:
        """`draws` samples of `mode`'s actions (noise seeds seed .. seed + draws - 1), each equal to that seed's
        `run(mode, ...)`, with the given frames encoded and their K/V cache built once and no frames decoded.
        inverse_dynamics: context is the whole clip, uint8 [T, H, W, 3] -> f32 [draws, T-1, A]. policy: context
        the Tc frames seen so far, request's actions their Tc - 1 history rows (and num_frames the window) ->
        f32 [draws, T-1, A], whose rows from Tc - 1 on are the chunk to act."""
        if draws < 1:
            raise ValueError(f"draws: expected at least 1, got {draws}")
        if mode not in ("inverse_dynamics", "policy"):
            raise ValueError(f"infer_actions: expected mode inverse_dynamics or policy, got {mode!r}")
        if mode == "inverse_dynamics":
            request["num_frames"] = len(context)
        p = self._plan(mode, context=context, num_steps=num_steps, **request)
        cache, rows = self._context(p.tok, p.guides), []
        for i in range(draws):
            values = self._denoise(p.tok, p.guides, num_steps=p.num_steps, shift=p.shift, sampler=p.sampler,
                                   seed=seed + i, strength=p.strength, progress=False, cache=cache)
            rows.append(self._unpack(mode, p, values, frames=False)["actions"])
        return np.stack(rows)

    def _plan(self, mode: str, *, num_frames: int = 33, context: np.ndarray | None = None, actions=None,
              domain_name: str | None = None, action_names=(), prompt: str = "", fps: float = 16.0, size: int = 64,
              guidance: float | None = None, num_steps: int | None = None, shift: float | None = None,
              sampler: str = "dpmpp_2m", sound: bool = False, action_guidance: float = 1.0,
              strength: float | None = None, carry: bool | None = None,
              carry_gate: float | None = None) -> "_Plan":
        """Check a request and build its packed tokens (and each guide's), with the given frames encoded."""
        check_mode(mode)
        c = self.config
        tc, sc = c.temporal_compression, c.spatial_compression
        if num_frames > c.tokenizer_window:  # one window of latents per sample; longer clips continue in chunks
            raise ValueError(f"num_frames: one sample makes at most {c.tokenizer_window} frames (the tokenizer's "
                             f"window), got {num_frames}; Pipeline.rollout continues longer clips")
        t = 1 if mode == "text2image" else latent_frames(num_frames, tc)
        T = 1 + tc * (t - 1)
        guidance = DEFAULT_GUIDANCE.get(mode, 1.0) if guidance is None else float(guidance)
        action_guidance = float(action_guidance)
        if action_guidance != 1.0 and mode != "forward_dynamics":
            raise ValueError(f"action_guidance: only forward_dynamics has actions to guide by, got mode {mode!r}")
        num_steps = DEFAULT_STEPS.get(mode, 35) if num_steps is None else num_steps
        if context is not None:
            size = context.shape[1]
        if size % (sc * c.patch[0]):
            raise ValueError(f"size: frames must be a multiple of {sc * c.patch[0]} pixels, got {size}")
        vision = torch.zeros(c.latent_channels, t, size // sc, size // sc)
        if shift is None and c.schedule != "edm":  # rectified flow's time shift grows with the frame's tokens
            shift = schedule_for(c, size=size).shift
        k, Tc, keys = None, 0, None
        if context is not None and mode not in ("text2image", "text2video"):
            Tc = len(context) if mode != "image2video" else 1
            if mode == "inverse_dynamics" and Tc != T:
                raise ValueError(f"inverse_dynamics reads the whole clip: expected {T} frames, got {Tc}")
            if (Tc - 1) % tc or Tc > T:
                raise ValueError(f"context: expected 1 + {tc}j given frames (1, {1 + tc}, {1 + 2 * tc}, ...) and "
                                 f"fewer than num_frames={T}, got {Tc}")
            k = 1 + (Tc - 1) // tc
            vision[:, :k] = self.encode_frames(context[:Tc])
            if c.pixel_cell:  # the given frames' own pixels, as the model saw them in training
                keys = torch.from_numpy(np.ascontiguousarray(keyframes(context[:Tc], tc, c.tokenizer_window)))
        elif mode not in ("text2image", "text2video"):
            raise ValueError(f"{mode} needs given frames (vision_path)")
        if strength is None:
            strength = DEFAULT_STRENGTH.get(mode, 1.0) if k is not None and k < t else 1.0
        if isinstance(strength, bool) or not (isinstance(strength, (int, float)) and 0 < strength <= 1):
            raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
        if strength != 1.0 and (k is None or k >= t):
            raise ValueError(f"strength: below 1 only where given frames start a future to generate; {mode} with "
                             f"{Tc} given of {T} frames has none")
        if k is not None and k < t:
            vision[:, k:] = vision[:, k - 1 : k]  # the generated frames' values: ignored, or the guess (strength < 1)
        streams = dict(vision=vision, fps=fps, audio=None, actions=None, domain=None, keys=keys)
        if mode in ACTION_MODES:
            if actions is None and mode != "inverse_dynamics" and mode != "policy":
                raise ValueError(f"{mode} needs actions (action_path)")
            dim = None if actions is None else np.asarray(actions).shape[1]
            slot = self._domain(domain_name, action_names, dim)
            e = c.embodiments[slot]
            a = np.zeros((T, e.dim), np.float32) if actions is None else np.asarray(actions, np.float32)
            if len(a) < T:
                raise ValueError(f"actions: expected a row for each of the {T} frames, got {len(a)}")
            streams.update(actions=(torch.as_tensor(a[:T]) - torch.tensor(e.mean)) / torch.tensor(e.std), domain=slot)
        if sound:
            streams["audio"] = torch.zeros(c.audio_channels, audio_latent_frames(T, fps, c.audio_rate))
        ids = self.text.encode(prompt, bos=True) if prompt else []
        tok = plan_tokens(c, mode, streams, text=ids, k=k, sound=sound)
        guides = []  # (sequence without one condition, its scale)
        if guidance != 1.0:
            guides.append((plan_tokens(c, mode, streams, text=[], k=k, sound=sound), guidance))
        if action_guidance != 1.0:
            guides.append((plan_tokens(c, "video2video", streams, text=ids, k=k), action_guidance))
        if carry is None:
            carry = k is not None and k < t and carry_default(
                None if streams["domain"] is None else c.embodiments[streams["domain"]])
        if not isinstance(carry, bool):
            raise ValueError(f"carry must be true or false, got {carry!r}")
        if carry and (k is None or k >= t):
            raise ValueError(f"carry: only where given frames start a future to generate; {mode} with {Tc} given "
                             f"of {T} frames has none")
        check_gate(carry_gate)
        given = context[:Tc] if k else None
        return _Plan(tok, guides, vision, k or 0, T, streams, fps, num_steps, shift, sampler, strength, given, carry,
                     carry_gate)

    def _context(self, tok, guides):
        """The clean context of tok and of each guide's sequence, encoded once: their K/V cache (None: none)."""
        seqs = [tok] + [u for u, _ in guides]
        ctx = [s.select(~s.gen) for s in seqs]
        if not max(len(x) for x in ctx):
            return None
        inverse = self.model.inverse_samples(collate([s.select(s.gen) for s in seqs]))  # their context is their own
        with self._autocast():
            return self.model.encode_context(collate(ctx).to(self.device),
                                             None if inverse is None else
                                             {site: m.to(self.device) for site, m in inverse.items()})

    def _denoise(self, tok, guides, *, num_steps, shift, sampler, seed, progress, strength=1.0,
                 cache=None) -> torch.Tensor:
        """Sample the noisy tokens' values; -> all values [L, V] with the noisy rows filled. guides: (sequence
        with one condition dropped and the same noisy tokens, scale) pairs for classifier-free guidance;
        strength < 1 starts from the noisy rows' values in tok as the guess. cache: `_context(tok, guides)`,
        to share it between samples of one request (None: encoded here)."""
        seqs = [tok] + [u for u, _ in guides]
        noisy = collate([s.select(s.gen) for s in seqs]).to(self.device)
        cache = self._context(tok, guides) if cache is None else cache
        n, Ln, V = noisy.value.shape
        schedule = schedule_for(self.config)
        real = (torch.arange(V, device=self.device) < noisy.dims[0, :, None]).float()  # [Ln, V]
        noise, init = self.start(tok, real, seed, strength)

        def denoise(x, t):
            value = schedule.model_input(x, t).expand(n, Ln, V).float()
            with self._autocast():
                out = self.model(replace(noisy, value=value), schedule.noise_level(t).expand(n, Ln).float(), cache=cache)
            x0 = schedule.to_x0(x, t, out.float())
            x0 = x0[0] + sum((g - 1.0) * (x0[0] - x0[i + 1]) for i, (_, g) in enumerate(guides))
            return x0.reshape(Ln, V) * real

        x0 = sample(denoise, noise, schedule, num_steps=num_steps, sampler=sampler, shift=shift, progress=progress,
                    init=init, strength=strength)
        values = tok.value.clone()
        values[tok.gen] = x0[: int(tok.gen.sum())].float().cpu()  # the rest is collate's padding
        return values

    def start(self, tok, real: torch.Tensor, seed: int, strength: float = 1.0):
        """Where the sampler starts for tok's noisy rows (real: [Ln, V], 1 where a row has a value; Ln may include
        collate's padding): -> (noise [Ln, V], the guess [Ln, V] when strength < 1, else None)."""
        Ln, V = real.shape
        D = self.config.denoised_dim
        g = torch.Generator().manual_seed(int(seed))
        # drawn no wider than what is denoised, so a pixel view (wider values) leaves the noise, and samples, as they were
        noise = torch.nn.functional.pad(torch.randn(Ln, D, generator=g), (0, V - D)).to(real.device) * real
        if strength >= 1:
            return noise, None
        init = torch.zeros_like(noise)
        init[: int(tok.gen.sum()), :D] = tok.value[tok.gen, :D].to(real.device)
        return noise, init * real

    def _unpack(self, mode, p: _Plan, values, frames: bool = True) -> dict:
        c, tok, k, T, streams = self.config, p.tok, p.k, p.T, p.streams
        C, t, h, w = p.vision.shape
        z = unpatchify(segment_values(tok, values, VISION), C, t, h, w, c.patch)
        z[:, :k] = p.vision[:, :k]  # given frames stay exactly as encoded
        Tc = 1 + c.temporal_compression * (k - 1) if k else 0
        out = {"frames": self.decode_latents(z, 1 if mode == "text2image" else T) if frames else None,
               "actions": None, "audio": None, "context_frames": Tc}
        if frames and p.carry:  # the given frames as given, and their detail where the future keeps them
            x = out["frames"]
            x[Tc:] = carry_detail(x[Tc:], p.given[Tc - 1], x[Tc - 1], p.carry_gate)
            x[:Tc] = p.given[:Tc]
        if streams["actions"] is not None:
            e = c.embodiments[streams["domain"]]
            rows = segment_values(tok, values, ACTION) * torch.tensor(e.std) + torch.tensor(e.mean)
            rows[:, torch.tensor(e.constant_dims())] = torch.tensor(e.mean)[torch.tensor(e.constant_dims())]
            out["actions"] = rows.numpy().astype(np.float32)
        if (tok.kind == AUDIO).any():
            Na = streams["audio"].shape[1]
            a = audio_from_model(audio_frames(segment_values(tok, values, AUDIO), c, Na), *self._aud)
            with torch.no_grad(), self._autocast():
                wav = self.audio_tokenizer.decode(a[None].to(self.device))[0].float().cpu()
            sr = self.audio_tokenizer.cfg.sample_rate
            out["audio"] = wav[: round(T / p.fps * sr)].clamp(-1, 1).numpy()
        return out

    # ------------------------------------------------------------ long clips

    def rollout(self, context: np.ndarray, num_future: int, *, actions=None, window: int = 33, max_context: int = 9,
                given: int | None = None, carry: bool | None = None, carry_gate: float | None = None,
                **kw) -> np.ndarray:
        """uint8 [Tc, H, W, 3] + raw actions [Tc + num_future, A] (or None) -> uint8 [num_future, H, W, 3].

        Chunks of at most `window` frames, each conditioned on the last 1 + 4j <= max_context frames so far
        (forward dynamics with actions, else video2video). carry (kinema.model.carry; None: the default for these
        actions) takes its detail from the last real frame only, so no chunk carries a carried frame's trace again:
        the chunks made here are conditioned on the decoder's own frames, and every generated frame gets the last
        real frame's round-trip error. given: how many leading frames of context are real (default all; the later
        ones an earlier rollout made, as an imagination fed back)."""
        tc = self.config.temporal_compression
        g = len(context) if given is None else int(given)
        if not 1 <= g <= len(context):
            raise ValueError(f"given: expected 1..{len(context)} real frames at the start of context, got {given}")
        check_gate(carry_gate)
        mode = "forward_dynamics" if actions is not None else "video2video"
        if actions is None:
            kw.pop("action_guidance", None)  # nothing to guide by
        if carry is None:
            slot = None if actions is None else self._domain(kw.get("domain_name"), kw.get("action_names", ()),
                                                              np.asarray(actions).shape[1])
            carry = carry_default(None if slot is None else self.config.embodiments[slot])
        real_last, decoded_last = context[g - 1], None
        if carry and g < len(context):  # the real frame's round trip, in the window a first chunk would see it in
            n = 1 + tc * ((min(g, max_context) - 1) // tc)
            decoded_last = self.decode_latents(self.encode_frames(context[g - n : g]), n)[-1]
        frames = list(context)
        while len(frames) < len(context) + num_future:
            c = 1 + tc * ((min(len(frames), max_context) - 1) // tc)
            start = len(frames) - c
            need = len(context) + num_future - len(frames)
            total = c + need
            T = min(window, 1 + tc * -(-(total - 1) // tc))  # round up to 1 + 4m, at most the window
            a = None
            if actions is not None:
                a = np.asarray(actions, np.float32)[start : start + T]
                a = np.concatenate([a, np.repeat(a[-1:], T - len(a), 0)]) if len(a) < T else a
            out = self.run(mode, num_frames=T, context=np.stack(frames[start:]), actions=a, carry=False, **kw)
            if decoded_last is None:  # the first chunk's given frames end with the last real one
                decoded_last = out["frames"][c - 1]
            frames += list(out["frames"][c : c + need])
        future = np.stack(frames[len(context):])
        return carry_detail(future, real_last, decoded_last, carry_gate) if carry else future
