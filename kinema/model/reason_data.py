"""Training and evaluation data for the reasoner: episode videos as latents + questions answered from ground truth.

Legend: N clips, C latent channels, t latent frames, h/w latent grid, T frames.

`build_reason_latents` encodes every camera of every episode of every dataset
(subsampled to at most 49 frames by reasoner.reasoner_clip, so a 6 s tabletop
episode is seen whole at 8 fps) and stores, per dataset, one safetensors shard
of latents plus a JSON list of the questions each clip answers, written
atomically and skipped when present. The questions (`questions`) come from the
simulator: the QA the worlds record (kinema.worlds.language) plus

  attribute   "Is there a {colour} object in the scene?"  (one yes, one no)
  forecast    "Which block does the arm go for?"  from the first second only
              "Which way does the hand move next?"  from the video up to a cut;
              the dominant axis of the hand's next 0.5 s in the world frame
              (x forward/backward, y left/right, z up/down)
  caption     "Describe what happens in the video."

Plausibility is asked only in datasets that hold implausible twins (both answers).
Each question may carry `latent_frames`: the model sees only that many latent
frames (the tokenizer is causal, so they equal the latents of the shorter clip).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kinema.model.data import dataset_shards, shard_done
from kinema.model.reasoner import reasoner_clip
from kinema.model.sequence import build_interleaved
from kinema.train.checkpoint import load_tensors, read_json, save_tensors, write_json

SKIP = {"final_position"}  # metric regression, not one of the reasoner's tasks
TASK_OF = {  # question type -> the task it is reported under (kinema eval reason)
    "count": "count", "count_fallen": "count",
    "attribute": "attribute", "first_mover": "attribute",
    "stack_falls": "outcome", "outcome": "outcome", "first_to_ground": "outcome", "lifted": "outcome",
    "in_goal": "outcome", "on_top": "outcome",
    "first_collision_time": "timing",
    "plausibility": "plausibility",
    "target_block": "forecast", "next_move": "forecast",
    "success": "success",
    "caption": "caption",
}
AXES = (("forward", "backward"), ("left", "right"), ("up", "down"))
STILL = 0.01  # m in 0.5 s: below this the hand "stays still"


def _display(o: dict) -> str:
    from kinema.worlds.language import display

    return display(o)


def questions(row: dict, arrays: dict, fps: float, stride: int, t: int, plausibility: bool) -> list[dict]:
    """One episode's questions (deterministic: seeded by the episode's seed)."""
    info = json.loads(row["kinema/info"])
    objects = json.loads(row["kinema/objects"])
    rng = np.random.default_rng(json.loads(row["kinema/seed"]))
    out = [dict(type="caption", question="Describe what happens in the video.", answer=json.loads(row["kinema/caption"]))]
    for q in json.loads(row["kinema/qa"]):
        if q["type"] in SKIP or (q["type"] == "plausibility" and not plausibility):
            continue
        out.append({k: q[k] for k in ("type", "question", "answer", "value") if k in q})
    from kinema.worlds.scene import PALETTE

    movable = [o for o in objects if o["kind"] in ("dynamic", "articulated")]
    present = {o["colour"] for o in objects}
    if movable:
        yes = movable[int(rng.integers(len(movable)))]["colour"]
        out.append(dict(type="attribute", question=f"Is there a {yes} object in the scene?", answer="yes"))
    absent = sorted(c for c in PALETTE if c not in present)
    if absent:
        no = absent[int(rng.integers(len(absent)))]
        out.append(dict(type="attribute", question=f"Is there a {no} object in the scene?", answer="no"))
    if info.get("family") == "tabletop" and "ee.x" in info.get("state_names", []):
        block = info["params"].get("block")
        by_name = {o["name"]: o for o in objects}
        first_second = min(t, 1 + int(round(1.0 * fps / 4)))
        if block in by_name:
            out.append(dict(type="target_block", question="Which block does the arm go for?",
                            answer=_display(by_name[block]), latent_frames=first_second))
        names = info["state_names"]
        ee = arrays["state"][:, [names.index(n) for n in ("ee.x", "ee.y", "ee.z")]]
        ahead = int(round(0.5 * fps * stride))  # 0.5 s in original frames
        cuts = [k for k in range(2, t) if 4 * (k - 1) * stride + ahead < len(ee)]
        for k in rng.choice(cuts, size=min(2, len(cuts)), replace=False) if cuts else []:
            f0 = 4 * (int(k) - 1) * stride
            d = ee[f0 + ahead] - ee[f0]
            axis = int(np.abs(d).argmax())
            ans = "it stays still" if np.abs(d).max() < STILL else AXES[axis][0 if d[axis] > 0 else 1]
            out.append(dict(type="next_move", question="Which way does the hand move next?", answer=ans,
                            latent_frames=int(k)))
    return out


@torch.no_grad()
def build_reason_latents(roots, out, video_tokenizer, *, batch: int = 8, progress: bool = True) -> list[Path]:
    from kinema.data.reader import EpisodeStore
    from kinema.tokenize.data import to_model

    jobs = dataset_shards(roots, out)
    for root, path in tqdm(jobs, desc="reasoner latents", unit="set", disable=not progress):
        if shard_done(path):
            continue
        store = EpisodeStore(root)
        labels = {json.loads(r["kinema/info"])["plausible"] for r in store.meta}
        latents, meta, pending = [], [], []

        def flush():
            if pending:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    latents.append(video_tokenizer.encode(torch.stack([to_model(f) for f in pending])).float().half())
                pending.clear()

        for i in range(len(store)):
            a = store.read(i, masks=False)
            row = store.meta[i]
            info = json.loads(row["kinema/info"])
            for cam in store.cameras:
                frames, fps = reasoner_clip(a[f"frames/{cam}"], store.fps)
                stride = round(store.fps / fps)
                t = 1 + (len(frames) - 1) // 4
                qs = questions(row, a, fps, stride, t, plausibility=len(labels) > 1)
                meta.append(dict(world=info["scenario"], family=info["family"], camera=cam, fps=fps, episode=i,
                                 seed=json.loads(row["kinema/seed"]), questions=qs))
                pending.append(frames)
                if len(pending) >= batch:
                    flush()
        flush()
        save_tensors(path, {"vision": torch.cat(latents)})
        write_json(path.with_suffix(".json"), {"dataset": str(root), "clips": meta})
    return [path for _, path in jobs]


def load_reason_shards(shards) -> tuple[list[torch.Tensor], list[dict]]:
    """-> (latents per clip [C, t, h, w] fp16, clip meta) over all shards."""
    vision, clips = [], []
    for path in shards:
        v = load_tensors(Path(path))["vision"]
        meta = read_json(Path(path).with_suffix(".json"))["clips"]
        vision += list(v)
        clips += meta
    return vision, clips


def messages_for(q: dict, answer: bool = True) -> list[dict]:
    """The chat messages of one question; the video part stands for the clip's latents."""
    msgs = [{"role": "user", "content": [{"type": "video", "video": "<latents>"}, {"type": "text", "text": q["question"]}]}]
    if answer:
        msgs.append({"role": "assistant", "content": q["answer"]})
    return msgs


def question_tokens(config, text, latent: torch.Tensor, fps: float, q: dict, *, answer: bool = True,
                    latent_mean=None, latent_std=None):
    """One question as tokens: standardised latents [C, t, h, w] (cut to q's latent_frames) + chat text."""
    from kinema.model.chat import render

    segments, scored = render(messages_for(q, answer), text, add_generation_prompt=not answer)
    z = latent.float()
    if latent_mean is not None:
        z = (z - latent_mean) / latent_std
    if q.get("latent_frames"):
        z = z[:, : q["latent_frames"]]
    segs = [("vision", z, fps) if s[0] == "media" else s for s in segments]
    return build_interleaved(config, segs, scored)


class ReasonTasks(torch.utils.data.Dataset):
    """Every (clip, question) pair as a training sample with its answer tokens scored."""

    def __init__(self, shards, config, text_tokenizer):
        self.config, self.text = config, text_tokenizer
        self.vision, self.clips = load_reason_shards(shards)
        self.items = [(i, j) for i, c in enumerate(self.clips) for j in range(len(c["questions"]))]
        self.mean = torch.tensor(config.latent_mean).view(-1, 1, 1, 1)
        self.std = torch.tensor(config.latent_std).view(-1, 1, 1, 1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        i, j = self.items[k]
        c = self.clips[i]
        return question_tokens(self.config, self.text, self.vision[i], c["fps"], c["questions"][j],
                               latent_mean=self.mean, latent_std=self.std)


class JointTasks(torch.utils.data.Dataset):
    """Generator tasks and reasoner questions in one dataset: each draw is a question with probability p
    (torch's global RNG, checkpointed by the trainer, so a resumed run draws alike)."""

    def __init__(self, generator, reasoner, p_reason: float):
        if not 0 <= p_reason <= 1:
            raise ValueError(f"p_reason: expected a probability in [0, 1], got {p_reason}")
        self.generator, self.reasoner, self.p = generator, reasoner, p_reason

    def __len__(self) -> int:
        return len(self.generator) + len(self.reasoner)

    def __getitem__(self, i: int):
        if float(torch.rand(())) < self.p:
            return self.reasoner[int(torch.randint(len(self.reasoner), ()))]
        return self.generator[i % len(self.generator)]
