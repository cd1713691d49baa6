"""The reasoner path: answer questions about video in text, with a KV cache, streaming as it goes.

Legend: T frames, H height, W width, L prompt tokens, V vocabulary.

The same checkpoint as the generator (Pipeline): chat messages (chat.py) are
rendered, their videos encoded by the frozen video tokenizer, and the whole
prompt runs once through the reasoner weights (causal). Each new token then
runs alone against the cached K/V of everything before it (`use_cache=False`
recomputes the full sequence instead: the reference the cache is tested
against). A new text token takes the next text position (p, p, p) and the
next group, exactly as an answer segment does in training
(sequence.build_interleaved).

Videos longer than MAX_VIDEO_FRAMES are subsampled in time (fps divided by the
stride, so positions stay in seconds) and cut to 1 + 4k frames; training
(reason_data.py) prepares its clips with the same `reasoner_clip`. A model
that hears (config.reason_audio) also gets the sound of those frames' time
span, encoded by the audio tokenizer (never subsampled: impacts stay sharp).
A model with config.pixel_cell also sees the kept frames' keyframes as pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from kinema.model.chat import render
from kinema.model.decoding import SamplingParams, sample_next
from kinema.model.sequence import TEXT, Tokens, build_interleaved, collate, for_world, keyframes

MAX_VIDEO_FRAMES = 49  # 13 latent frames: a 97-frame 16 fps episode at 8 fps
DEFAULT_FPS = 16.0


def reasoner_clip(frames: np.ndarray, fps: float, tc: int = 4, max_frames: int = MAX_VIDEO_FRAMES):
    """uint8 [T, H, W, 3] -> (frames [1 + tc·k, H, W, 3], fps): every stride-th frame, cut to 1 + tc·k."""
    stride = max(1, math.ceil((len(frames) - 1) / (max_frames - 1)))
    frames = frames[::stride]
    n = 1 + (len(frames) - 1) // tc * tc
    return frames[:n], fps / stride


def load_media(part: dict, sample_rate: int | None = None):
    """A chat media part -> (uint8 [T, H, W, 3], fps, mono f32 sound [N] at sample_rate or None). A path is read
    as generate's vision_path is; its sound track (if any) is read only when sample_rate is given."""
    kind, media = part["type"], part[part["type"]]
    fps, sound = part.get("fps"), None
    if isinstance(media, (str, Path)):
        from kinema.model.generate import load_vision

        path = media
        media, file_fps = load_vision(path, None)
        fps = fps or file_fps
        if kind == "image":
            media = media[:1]
        elif sample_rate:
            from kinema.data.video_io import decode_audio

            sound = decode_audio(path, sample_rate)
    elif kind == "image":
        media = media[None]
    elif sample_rate and "audio" in part:
        if part["sample_rate"] != sample_rate:
            raise ValueError(f"audio: this model hears {sample_rate} Hz sound, got {part['sample_rate']} Hz")
        sound = part["audio"]
    return media, float(fps or DEFAULT_FPS), sound


class Reasoner:
    """Text out from a world-model checkpoint's reasoner weights."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.model, self.text, self.config = pipeline.model, pipeline.text, pipeline.config
        self.stop_ids = {self.text.token_id("<|im_end|>"), self.text.token_id("<eos>")}

    @classmethod
    def from_pretrained(cls, path, **kw) -> "Reasoner":
        from kinema.model.pipeline import Pipeline

        return cls(Pipeline.from_pretrained(path, **kw))

    def prompt(self, messages, *, add_generation_prompt: bool = True, domain: str | None = None) -> Tokens:
        """Chat messages -> one sample's tokens (videos encoded). domain: the world the video shows; one with an
        adapter of its own (config.reason_own) is asked through it, any other through the shared one."""
        segments, scored = render(messages, self.text, add_generation_prompt=add_generation_prompt)
        out = []
        for seg in segments:
            if seg[0] == "media":
                hear = self.config.reason_audio and self.pipeline.audio_tokenizer is not None
                frames, fps, sound = load_media(seg[1], self.pipeline.audio_tokenizer.cfg.sample_rate if hear else None)
                frames, fps = reasoner_clip(frames, fps, self.config.temporal_compression)
                if sound is not None:  # the sound of the kept frames (subsampling keeps their time span)
                    sound = self.pipeline.encode_sound(sound, self.pipeline.audio_tokenizer.cfg.sample_rate,
                                                       len(frames), fps)
                keys = torch.from_numpy(np.ascontiguousarray(keyframes(frames, self.config.temporal_compression,
                                                                        self.pipeline.video_tokenizer.cfg.window)))
                out.append(("vision", self.pipeline.encode_frames(frames), fps, sound, keys))
            else:
                out.append(seg)
        return for_world(self.config, build_interleaved(self.config, out, scored), domain)

    def _run(self, tok: Tokens, cache):
        """-> (logits [1, V] at the last token, cache); ids the text tokenizer lacks can never be chosen."""
        with torch.no_grad(), self.pipeline._autocast():
            logits, cache = self.model.reason(collate([tok], multiple=1).to(self.pipeline.device), cache)
        logits[:, self.text.vocab_size:] = float("-inf")
        return logits, cache

    def generate_ids(self, prompt: Tokens, params: SamplingParams | None = None, *, use_cache: bool = True) -> Iterator[int]:
        """Yield new token ids until a stop token (not yielded) or max_new_tokens."""
        params = params or SamplingParams()
        gen = torch.Generator().manual_seed(params.seed)
        seq = prompt
        logits, cache = self._run(prompt, None)
        pos, group, world = float(prompt.pos.max()) + 1, int(prompt.group.max()) + 1, int(prompt.world.max())
        for _ in range(params.max_new_tokens):
            nxt = int(sample_next(logits.cpu(), params, gen)[0])
            if nxt in self.stop_ids:
                return
            yield nxt
            new = _text_token(self.config, nxt, pos, group, world)
            pos, group = pos + 1, group + 1
            if use_cache:
                logits, cache = self._run(new, cache)
            else:  # the reference: run the whole sequence again
                seq = _cat(seq, new)
                logits, _ = self._run(seq, None)

    def stream(self, messages, params: SamplingParams | None = None, *, use_cache: bool = True,
               domain: str | None = None) -> Iterator[str]:
        """Yield the answer's text as it grows (pieces join to exactly `answer`'s string). With params.stop the
        answer ends before the first stop string it holds (no more tokens are drawn), and text that may begin
        one is held back until the next tokens tell."""
        params = params or SamplingParams()
        ids, said, text = [], "", ""
        for i in self.generate_ids(self.prompt(messages, domain=domain), params, use_cache=use_cache):
            ids.append(i)
            text = self.text.decode(ids)
            cut = _stop_at(text, params.stop)
            if cut is not None:
                text = text[:cut]
                break
            if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                ready = len(text) - _may_begin_stop(text, params.stop)
                yield text[len(said) : ready]
                said = text[:ready]
        if len(text) > len(said):
            yield text[len(said):]

    def answer(self, messages, params: SamplingParams | None = None, *, use_cache: bool = True,
               domain: str | None = None) -> str:
        return "".join(self.stream(messages, params, use_cache=use_cache, domain=domain))  # the same, streamed or not

    def choice_logprobs(self, messages, choices: list[str], domain: str | None = None) -> list[float]:
        """log P(answer = choice) for each choice string (its tokens, then <|im_end|>)."""
        return self.score_tokens(self.prompt(messages, domain=domain), choices)

    def min_risk(self, prompt: Tokens, choices: list[str], loss) -> tuple[int, np.ndarray]:
        """Minimum-Bayes-risk answer: the choice with the least expected loss(choice, answer) under the model's
        distribution renormalised over `choices`. For a number under absolute error that is the posterior
        median, which a greedy answer (the mode, one token at a time) is not. -> (index, posterior [n])."""
        logp = np.array(self.score_tokens(prompt, choices))
        p = np.exp(logp - logp.max())
        p /= p.sum()
        risk = np.array([[loss(a, b) for b in choices] for a in choices]) @ p
        return int(risk.argmin()), p

    def score_tokens(self, prompt: Tokens, choices: list[str], chunk: int = 64) -> list[float]:
        """choice_logprobs for a prompt already built: teacher-forced against its one cached K/V, the choices
        run side by side (padded to the longest) in batches of `chunk` against that cache expanded."""
        from kinema.model.mot import Cache, LayerCache

        last, cache = self._run(prompt, None)
        first = torch.log_softmax(last[0].float().cpu(), -1)
        pos, group, world = float(prompt.pos.max()) + 1, int(prompt.group.max()) + 1, int(prompt.world.max())
        end = self.text.token_id("<|im_end|>")
        ids = [self.text.encode(c) + [end] for c in choices]
        out = [float(first[i[0]]) for i in ids]
        longer = [j for j, i in enumerate(ids) if len(i) > 1]
        for at in range(0, len(longer), chunk):
            rows = longer[at : at + chunk]
            n = len(rows)
            b = collate([_cat_all([_text_token(self.config, t, pos + j, group + j, world) for j, t in enumerate(ids[r][:-1])])
                         for r in rows], multiple=1).to(self.pipeline.device)
            wide = Cache([LayerCache(lc.k.expand(n, -1, -1, -1), lc.v.expand(n, -1, -1, -1)) for lc in cache.layers],
                         cache.group.expand(n, -1), cache.valid.expand(n, -1))
            with torch.no_grad(), self.pipeline._autocast():
                h, _ = self.model.reason_states(b, wide)
                rest = self.model.text_out(h).float().cpu()  # [n, Lmax, V]
            rest[..., self.text.vocab_size:] = float("-inf")
            rest = torch.log_softmax(rest, -1)
            for k, r in enumerate(rows):
                nxt = torch.tensor(ids[r][1:])
                out[r] += float(rest[k, torch.arange(len(nxt)), nxt].sum())
        return out


def _stop_at(text: str, stop) -> int | None:
    """Where the earliest stop string in `text` begins; None when it holds none."""
    return min((i for i in (text.find(s) for s in stop) if i >= 0), default=None)


def _may_begin_stop(text: str, stop) -> int:
    """How many characters at the end of `text` are the beginning of a stop string (0: none)."""
    return max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


def _text_token(cfg, token_id: int, pos: float, group: int, world: int = 0) -> Tokens:
    """One answer token; world: the prompt's (its adapter made the cache this token continues)."""
    return Tokens(kind=torch.tensor([TEXT]), gen=torch.zeros(1, dtype=torch.bool), group=torch.tensor([group]),
                  pos=torch.full((1, 3), pos), text=torch.tensor([token_id]), value=torch.zeros(1, cfg.value_dim),
                  dims=torch.zeros(1, dtype=torch.long), domain=torch.zeros(1, dtype=torch.long),
                  index=torch.zeros(1, dtype=torch.long), target=torch.full((1,), -1), cond=torch.zeros(1, cfg.cond_dim),
                  world=torch.full((1,), world), hold=torch.zeros(1, dtype=torch.bool))


def _cat_all(toks: list[Tokens]) -> Tokens:
    return Tokens(**{f.name: torch.cat([getattr(t, f.name) for t in toks]) for f in fields(Tokens)})


def _cat(a: Tokens, b: Tokens) -> Tokens:
    return _cat_all([a, b])


def episode_video(ep, camera: str) -> dict:
    """A chat video part of one camera of an Episode, with the episode's sound when it has any."""
    part = {"type": "video", "video": ep.frames[camera], "fps": ep.fps}
    if ep.audio is not None and len(ep.audio):
        part.update(audio=np.asarray(ep.audio, np.float32), sample_rate=int(ep.sample_rate))
    return part


CAPTION_QUESTION = "Describe what happens in the video."  # the caption task's question (reason_data asks it)
PLAUSIBILITY_QUESTION = "Is the motion in this video physically plausible?"  # as kinema.worlds.language asks it
SUCCESS_QUESTION = "Did the robot succeed?"  # as kinema.worlds.tabletop asks it


class ReasonerJudge:
    """The reasoner as a judge for the evaluation harness: log P("yes") - log P("no") to a yes/no question.

    `score` is the plausibility judge (kinema.eval.judge): PLAUSIBILITY_QUESTION about the first camera's video.
    `success` is the success judge, a reward model for the closed loop (kinema.eval.closed_loop): SUCCESS_QUESTION
    about every camera's video, the log-odds averaged over cameras. `caption` scores a text as the clip's caption,
    the critic of best-of-N generation. It is asked of silent video, so real and imagined episodes (which have no
    sound) are judged alike."""

    def __init__(self, reasoner: Reasoner, name: str = "reasoner"):
        self.reasoner, self.name = reasoner, name

    def _log_odds(self, video: dict, question: str, domain: str | None = None) -> float:
        msgs = [{"role": "user", "content": [video, {"type": "text", "text": question}]}]
        yes, no = self.reasoner.choice_logprobs(msgs, ["yes", "no"], domain=domain)
        return yes - no

    def score(self, item) -> float:
        """A clip (uint8 frames) or an Episode, whose world is named (a world's own adapter, if it has one)."""
        if isinstance(item, np.ndarray):
            return self._log_odds({"type": "video", "video": item, "fps": DEFAULT_FPS}, PLAUSIBILITY_QUESTION)
        return self._log_odds(episode_video(item, item.cameras[0]), PLAUSIBILITY_QUESTION,
                              domain=getattr(item, "scenario", None))

    def caption(self, frames: np.ndarray, fps: float, texts: list[str]) -> list[float]:
        """uint8 [T, H, W, 3] (silent) -> log P(text | the clip) for each text as the answer to CAPTION_QUESTION
        (one pass over the clip, the texts side by side): the critic of best-of-N generation
        (kinema.model.critic)."""
        msgs = [{"role": "user", "content": [{"type": "video", "video": np.asarray(frames), "fps": float(fps)},
                                             {"type": "text", "text": CAPTION_QUESTION}]}]
        return self.reasoner.choice_logprobs(msgs, list(texts))

    def success(self, frames: dict, fps: float) -> float:
        """frames: camera -> uint8 [T, H, W, 3] (a real or an imagined episode) -> log-odds that the task succeeded."""
        if not frames:
            raise ValueError("success: expected the frames of at least one camera, got none")
        return float(np.mean([self._log_odds({"type": "video", "video": np.asarray(f), "fps": float(fps)},
                                             SUCCESS_QUESTION) for f in frames.values()]))


def load_judge(path, *, device: str = "auto", **_):
    return ReasonerJudge(Reasoner.from_pretrained(path, device=device))
