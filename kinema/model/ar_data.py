"""Training data for the autoregressive world model: episodes -> DV tokenizer codes once -> token sequences.

Legend: N clips, t latent frames, h/w latent grid, T clip frames, A action dims.

`build_codes` encodes every clip_frames-long clip (every `stride` frames, every camera) of the datasets of the
chosen families with the frozen DV tokenizer, in fp32 (bf16 would change about 2% of the codes), and stores
one safetensors shard per dataset: indices int32 [N, t, h, w] (64,000 codes fit) and, where the world has
them, raw actions float32 [N, T, A], with a JSON of per-clip metadata. Each shard is written to a temporary
name and renamed into place, the JSON last, so a killed run resumes where it stopped. `CodeClips` serves
the stored clips as token sequences (kinema.model.autoregressive.sequence) with normalised actions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from kinema.model.autoregressive import ARTokens, sequence
from kinema.model.data import action_statistics, clip_embodiment, dataset_shards, shard_done
from kinema.train.checkpoint import load_tensors, read_json, save_tensors, write_json

FAMILIES = ("tabletop", "physics")


def _replace_atomically(write, path: Path) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    write(tmp)
    os.replace(tmp, path)


@torch.no_grad()
def build_codes(roots, out, video_tokenizer, *, clip_frames: int = 33, stride: int = 32, families=FAMILIES,
                batch: int = 8, progress: bool = True) -> list[Path]:
    """-> the shard paths of the datasets under `roots` whose family is in `families` (others skipped)."""
    from kinema.data.reader import EpisodeStore
    from kinema.tokenize.data import to_model

    if not video_tokenizer.cfg.discrete:
        raise ValueError("video_tokenizer: the autoregressive model needs a discrete (DV, FSQ) tokenizer, got a CV one")
    shards = []
    for root, path in tqdm(dataset_shards(roots, out), desc="encode datasets (DV codes)", unit="set",
                           disable=not progress):
        meta_path = path.with_suffix(".json")
        if shard_done(path):
            shards.append(path)
            continue
        store = EpisodeStore(root)
        if not len(store) or json.loads(store.meta[0]["kinema/info"])["family"] not in families:
            continue
        codes, actions, meta, pending, size = [], [], [], [], None

        def flush():
            if pending:
                idx, _ = video_tokenizer.encode(torch.stack([to_model(f) for f in pending]))
                codes.append(idx.int())
                pending.clear()

        for i in range(len(store)):
            a = store.read(i, masks=False, audio=False)
            info = json.loads(store.meta[i]["kinema/info"])
            T = store.meta[i]["length"]
            for start in range(0, T - clip_frames + 1, stride):
                for cam in store.cameras:
                    frames = a[f"frames/{cam}"][start : start + clip_frames]
                    size = size or frames.shape[1:3]
                    if frames.shape[1:3] != size:
                        raise ValueError(f"{root}: camera {cam!r} of episode {i} has {frames.shape[1:3]} frames, "
                                         f"others {size}; one shard holds one frame size")
                    pending.append(frames)
                    actions.append(torch.as_tensor(a["action"][start : start + clip_frames]).float())
                    meta.append(dict(world=info["scenario"], family=info["family"], camera=cam, start=start,
                                     fps=store.fps, episode=i, action_names=info.get("action_names", [])))
                    if len(pending) >= batch:
                        flush()
        flush()
        if not meta:
            continue
        tensors = {"indices": torch.cat(codes)}
        if actions[0].shape[1]:
            tensors["actions"] = torch.stack(actions)
        _replace_atomically(lambda p: save_tensors(p, tensors), path)
        _replace_atomically(lambda p: write_json(p, {"dataset": str(root), "clip_frames": clip_frames, "clips": meta}),
                            meta_path)
        shards.append(path)
    if not shards:
        raise ValueError(f"--data {', '.join(map(str, [roots] if isinstance(roots, (str, Path)) else roots))}: no dataset of the families {list(families)}")
    return shards


class CodeClips(torch.utils.data.Dataset):
    """Stored clips -> token sequences (ARTokens [L]), actions normalised by the config's embodiment statistics."""

    def __init__(self, shards, config, *, limit: int | None = None):
        self.config = config
        self.indices, self.actions, self.clips = [], [], []
        base = 0
        for path in shards:
            t = load_tensors(Path(path))
            meta = read_json(Path(path).with_suffix(".json"))["clips"]
            if len(meta) != len(t["indices"]):
                raise ValueError(f"{path}: {len(t['indices'])} clips of codes but {len(meta)} in its JSON")
            for j, m in enumerate(meta):
                slot = clip_embodiment(config.embodiments, m, t["actions"].shape[-1]) if "actions" in t else None
                self.clips.append(dict(m, row=base + j, action_row=len(self.actions) if slot is not None else None,
                                       domain=slot))
                if slot is not None:
                    self.actions.append(t["actions"][j])
            self.indices.append(t["indices"])
            base += len(t["indices"])
        self.indices = torch.cat(self.indices)
        if limit is not None:
            self.clips = self.clips[:limit]
        e = config.embodiments
        self._norm = {i: (torch.tensor(x.mean), torch.tensor(x.std)) for i, x in enumerate(e)}

    def __len__(self) -> int:
        return len(self.clips)

    def codes(self, i: int) -> dict:
        """Clip i: indices int64 [t, h, w], normalised actions [T, dim] or None, their domain slot, fps."""
        m = self.clips[i]
        actions = None
        if m["action_row"] is not None:
            mean, std = self._norm[m["domain"]]
            actions = (self.actions[m["action_row"]] - mean) / std
        return dict(indices=self.indices[m["row"]].long(), actions=actions, domain=m["domain"] or 0, fps=m["fps"])

    def __getitem__(self, i: int) -> ARTokens:
        c = self.codes(i)
        return sequence(self.config, c["indices"], c["actions"], c["domain"], c["fps"])
