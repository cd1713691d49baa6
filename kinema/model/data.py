"""Training data for the world model: episodes -> tokenizer latents once -> a mixture of tasks.

Legend: N clips, C latent channels, t latent frames, h/w latent grid,
Ca audio channels, Na audio latent frames, T clip frames, A action dims.

`build_latents` encodes every clip of every dataset under the given roots with
the (frozen) video and audio tokenizers and stores them with each clip's
keyframes (the pixels of its latent frames' last video frames, which a model
with config.pixel_cell reads beside its given frames), one safetensors shard
per dataset, written atomically and skipped when present (a killed run
resumes; a shard from before keyframes were kept is built again). `ClipTasks` turns a stored clip into one training sample: it draws a
mode (the conditioning mask of DESIGN's table) by the clip's family and
returns its packed tokens.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kinema.model import embodiments as emb
from kinema.model.modes import plan_tokens, sample_task
from kinema.model.sequence import audio_latent_frames
from kinema.train.checkpoint import load_tensors, read_json, save_tensors, write_json

FAMILY_EMBODIMENT = {"tabletop": "single_arm", "camera": "camera"}  # the built-in worlds' embodiments


def clip_embodiment(embodiments, meta: dict, width: int) -> int | None:
    """The slot of the embodiment whose actions a clip carries (width numbers a row), None for a family whose
    actions no mode reads (physics): the one with the clip's action names, else its family's built-in one when
    the width fits (shards written before clips kept their action names), else the only one of that width.
    A user's robot is a registered embodiment (`kinema train --embodiment NAME:DIM`) whose episodes, of the
    tabletop family, record their action names."""
    if meta["family"] not in FAMILY_EMBODIMENT:
        return None
    names = tuple(meta.get("action_names") or ())
    for i, e in enumerate(embodiments):
        if names and e.action_names == names:
            if e.dim != width:
                raise ValueError(f"a clip's actions {list(names)} have {width} numbers a row; embodiment {e.name} "
                                 f"has {e.dim}")
            return i
    fam = FAMILY_EMBODIMENT[meta["family"]]
    if embodiments[emb.index(embodiments, fam)].dim == width:
        return emb.index(embodiments, fam)
    hits = [i for i, e in enumerate(embodiments) if e.dim == width]
    if len(hits) == 1:
        return hits[0]
    raise ValueError(f"a {meta['family']!r} clip has {width}-D actions {list(names) or ''} that no registered embodiment "
                     f"takes ({', '.join(f'{e.name} {e.dim}-D' for e in embodiments)}); register one with "
                     f"`kinema train --embodiment NAME:{width}`")


def audio_to_model(a: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Audio latents [Ca, Na] -> model values: standardised, then asinh-compressed. Contact sounds are
    silence with loud impacts (standardised peaks reach 50): asinh keeps them near unit scale, invertibly."""
    return torch.asinh((a - mean) / std)


def audio_from_model(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return torch.sinh(z) * std + mean


def shard_name(root: Path) -> str:
    """Names a dataset's cached shard by its folder and its metadata (captions, QA, contacts), so a dataset
    simulated again with new answers gets a new shard instead of silently reusing the stale one."""
    h = hashlib.sha1(str(root.resolve()).encode())
    for f in sorted(p for p in (root / "meta").rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return f"{root.name}-{h.hexdigest()[:8]}"


def dataset_shards(roots, out) -> list[tuple[Path, Path]]:
    """(dataset folder, its shard path under out) for every dataset under roots (a path or a list); creates out."""
    from kinema.tokenize.data import find_datasets

    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [(d, out / f"{shard_name(d)}.safetensors") for r in roots for d in find_datasets(r)]


def shard_done(path: Path) -> bool:
    """A shard is written tensors first, JSON last (each atomically): both present means complete."""
    return path.exists() and path.with_suffix(".json").exists()


def shard_complete(path: Path, audio: bool = False) -> bool:
    """Built, with keyframes, and with sound when it is asked for (older shards are built again)."""
    if not shard_done(path):
        return False
    meta = read_json(path.with_suffix(".json"))
    return meta.get("keyframes", False) and (not audio or "audio_rate" in meta)


def latent_folder(folder) -> list[Path] | None:
    """The shards in `folder` when it is a folder of world-model shards built before (a run's latents/, or what
    scripts/simulate_latents.py --kind world made on a machine without the datasets), else None."""
    folder = Path(folder)
    found = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not found or (folder / "meta" / "info.json").exists():
        return None
    for path in found:
        if not shard_complete(path) or "clips" not in read_json(path.with_suffix(".json")):
            raise ValueError(f"{folder}: {path.name} is not a complete world-model shard (tensors + JSON with clips "
                             "and keyframes)")
    return found


@torch.no_grad()
def build_latents(roots, out, video_tokenizer, audio_tokenizer, *, clip_frames: int = 33, stride: int = 32,
                  batch: int = 8, progress: bool = True) -> list[Path]:
    """Encode every clip_frames-long clip (every `stride` frames) of every camera; -> the shard paths. A root may
    also be an EpisodeList (episodes in memory: its shard is named after it) or a folder of shards built before
    (taken as they are). The tokenizers encode on the device their weights are on."""
    from kinema.data.reader import EpisodeList, EpisodeStore
    from kinema.model.sequence import keyframes
    from kinema.tokenize.data import to_model

    vc = video_tokenizer.cfg
    roots = [roots] if isinstance(roots, (str, Path, EpisodeList)) else list(roots)
    jobs, built = [], []
    for r in roots:
        if isinstance(r, EpisodeList):
            Path(out).mkdir(parents=True, exist_ok=True)
            jobs.append((r, Path(out) / f"{r.root.name}.safetensors"))
        elif (made := latent_folder(r)) is not None:
            built += made
        else:
            jobs += dataset_shards(r, out)
    dev, adev = next(video_tokenizer.parameters()).device, next(audio_tokenizer.parameters()).device
    for root, path in tqdm(jobs, desc="encode datasets", unit="set", disable=not progress):
        if shard_complete(path):
            continue
        store = root if isinstance(root, EpisodeList) else EpisodeStore(root)
        videos, audios, actions, meta, keys = [], [], [], [], []
        pending = []

        def flush():
            if pending:
                x = torch.stack([to_model(f) for f in pending]).to(dev)
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    videos.append(video_tokenizer.encode(x).float().half().cpu())
                pending.clear()

        for i in range(len(store)):
            a = store.read(i, masks=False)
            row = store.meta[i]
            info = json.loads(row["kinema/info"])
            T = row["length"]
            sr = a["sample_rate"]
            for start in range(0, T - clip_frames + 1, stride):
                s0 = round(start / store.fps * sr)
                n = round(clip_frames / store.fps * sr)
                sound = np.zeros(n, np.float32)
                piece = a["audio"][s0 : s0 + n]
                sound[: len(piece)] = piece
                audios.append(torch.as_tensor(sound))
                for cam in store.cameras:
                    pending.append(a[f"frames/{cam}"][start : start + clip_frames])
                    keys.append(torch.from_numpy(np.ascontiguousarray(
                        keyframes(pending[-1], vc.temporal_compression, vc.window))))
                    actions.append(torch.as_tensor(a["action"][start : start + clip_frames]))
                    meta.append(dict(world=info["scenario"], family=info["family"], camera=cam, start=start,
                                     fps=store.fps, episode=i, seed=json.loads(row["kinema/seed"]), audio=len(audios) - 1,
                                     caption=json.loads(row["kinema/caption"]), task=row["tasks"][0],
                                     action_names=info.get("action_names", []), policy=info.get("policy")))
                    if len(pending) >= batch:
                        flush()
        flush()
        with torch.autocast(adev.type, dtype=torch.bfloat16):
            sound = audio_tokenizer.encode(torch.stack(audios).to(adev)).float().cpu()
        Na = audio_latent_frames(clip_frames, store.fps, audio_tokenizer.cfg.frame_rate)
        tensors = {"vision": torch.cat(videos), "audio": sound[..., :Na].half().contiguous(), "keyframes": torch.stack(keys)}
        if actions[0].shape[1]:
            tensors["actions"] = torch.stack(actions).float()
        save_tensors(path, tensors)
        write_json(path.with_suffix(".json"), {"dataset": str(store.root), "clip_frames": clip_frames,
                                               "keyframes": True, "clips": meta})
    return built + [path for _, path in jobs]


class ClipTasks(torch.utils.data.Dataset):
    """Stored clips -> packed training samples (sequence.Tokens), one random mode per draw.

    The policy mode is drawn only on clips of the expert (or of shards made before clips recorded their policy):
    a random arm's actions say nothing of what the instruction asks.
    Randomness comes from torch's global RNG, which the trainer checkpoints, so a
    resumed run draws the same modes. `mode` forces one mode (evaluation).
    """

    def __init__(self, shards, config, text_tokenizer, *, cond_dropout: float = 0.15, mode: str | None = None,
                 mixture: str = "all", mode_weights: dict | None = None):
        from kinema.model.modes import MIXTURES, check_mode_weights

        if mixture not in MIXTURES:
            raise ValueError(f"mixture: expected one of {sorted(MIXTURES)}, got {mixture!r}")
        self.config, self.cond_dropout, self.mode, self.mixture = config, cond_dropout, mode, mixture
        self.mode_weights = check_mode_weights(mode_weights, mixture)
        self.vision, self.audio, self.actions, self.clips, self.keys = [], [], [], [], []
        for path in shards:
            t = load_tensors(Path(path))
            meta = read_json(Path(path).with_suffix(".json"))["clips"]
            base_audio = sum(len(a) for a in self.audio)
            if meta and meta[0]["family"] not in MIXTURES[mixture]:
                if not any(meta[0]["family"] in table for table in MIXTURES.values()):
                    raise ValueError(f"{path}: world family {meta[0]['family']!r} has no training mixture; expected "
                                     f"one of {sorted({f for t in MIXTURES.values() for f in t})} (a robot arm's "
                                     "episodes are 'tabletop', a moving camera's 'camera')")
                continue  # a family this mixture does not train on
            for j, m in enumerate(meta):
                slot = clip_embodiment(config.embodiments, m, t["actions"].shape[-1]) if "actions" in t else None
                m = dict(m, row=len(self.clips), audio=base_audio + m["audio"],
                         action_row=len(self.actions) if slot is not None else None, slot=slot)
                if slot is not None:
                    self.actions.append(t["actions"][j])
                self.clips.append(m)
            self.vision.append(t["vision"])
            self.audio.append(t["audio"])
            if config.pixel_cell:  # the given frames' pixels: only a model that reads them keeps them in memory
                if "keyframes" not in t:
                    raise ValueError(f"{path}: this model reads its given frames' pixels (pixel_cell "
                                     f"{config.pixel_cell}) but the shard has no keyframes; delete it to build it again")
                self.keys.append(t["keyframes"])
        self.vision, self.audio = torch.cat(self.vision), torch.cat(self.audio)
        self.keys = torch.cat(self.keys) if self.keys else None
        self.text = {}
        for m in self.clips:
            for s in (m["caption"], m["task"]):
                if s not in self.text:
                    self.text[s] = text_tokenizer.encode(s, bos=True)[: config.max_text_tokens]
        c = config
        self.latent_mean = torch.tensor(c.latent_mean).view(-1, 1, 1, 1)
        self.latent_std = torch.tensor(c.latent_std).view(-1, 1, 1, 1)
        self.audio_mean = torch.tensor(c.audio_mean).view(-1, 1)
        self.audio_std = torch.tensor(c.audio_std).view(-1, 1)

    def __len__(self) -> int:
        return len(self.clips)

    def clip(self, i: int) -> dict:
        """The standardised streams of clip i: vision [C, t, h, w], audio [Ca, Na], actions [T, A] or None,
        keys: its keyframes uint8 [t, H, W, 3] (with config.pixel_cell) or None."""
        m = self.clips[i]
        out = dict(meta=m, vision=(self.vision[i].float() - self.latent_mean) / self.latent_std,
                   audio=audio_to_model(self.audio[m["audio"]].float(), self.audio_mean, self.audio_std), actions=None,
                   domain=None, keys=None if self.keys is None else self.keys[i])
        if m["action_row"] is not None:
            slot = m["slot"]
            e = self.config.embodiments[slot]
            a = self.actions[m["action_row"]]
            out["actions"] = (a - torch.tensor(e.mean)) / torch.tensor(e.std)
            out["domain"] = slot
        return out

    def __getitem__(self, i: int):
        c = self.clip(i)
        m = c["meta"]
        weights = self.mode_weights
        if m.get("policy") not in (None, "expert"):  # a random arm's actions are no one's intent: no policy to learn
            weights = {**weights, "policy": 0.0}
        task = sample_task(m["family"], c["vision"].shape[1], has_audio=m["family"] == "physics",
                           mixture=self.mixture, mode_weights=weights)
        mode = self.mode or task["mode"]
        text = [] if task["drop_text"] < self.cond_dropout else self.text[m[task["text"]]]
        return plan_tokens(self.config, mode, dict(c, fps=m["fps"]), text=text, k=task["k"], sound=task["sound"])


def statistics(shards, config) -> None:
    """Fill config's per-channel latent/audio statistics and each embodiment's action mean/std from the shards."""
    vis, aud = [], []
    for path in shards:
        t = load_tensors(Path(path))
        vis.append(t["vision"].float().transpose(0, 1).reshape(t["vision"].shape[1], -1))
        aud.append(t["audio"].float().transpose(0, 1).reshape(t["audio"].shape[1], -1))
    v, a = torch.cat(vis, 1), torch.cat(aud, 1)
    config.latent_mean, config.latent_std = v.mean(1).tolist(), v.std(1).clamp_min(1e-3).tolist()
    config.audio_mean, config.audio_std = a.mean(1).tolist(), a.std(1).clamp_min(1e-3).tolist()
    action_statistics(shards, config)


def action_statistics(shards, config, only=None) -> None:
    """Fill each embodiment's (or only those named) action mean/std (in config, in place) from the shards' raw
    actions [N, T, A]. An embodiment registered without action names takes its episodes' (when they all agree),
    so later data and requests find it by name."""
    rows, names = {}, {}
    for path in shards:
        t = load_tensors(Path(path))
        if "actions" not in t:
            continue
        meta = read_json(Path(path).with_suffix(".json"))["clips"]
        for j, m in enumerate(meta):
            slot = clip_embodiment(config.embodiments, m, t["actions"].shape[-1])
            if slot is not None and (only is None or config.embodiments[slot].name in only):
                rows.setdefault(slot, []).append(t["actions"][j])
                names.setdefault(slot, set()).add(tuple(m.get("action_names") or ()))
    for slot, r in rows.items():
        e = config.embodiments[slot]
        x = torch.cat(r)
        e.mean, e.std = x.mean(0).tolist(), x.std(0).clamp_min(emb.STD_FLOOR).tolist()
        if not e.action_names and len(names[slot]) == 1 and len(found := next(iter(names[slot]))) == e.dim:
            e.action_names = found
