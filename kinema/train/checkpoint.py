"""Checkpoints as folders of safetensors and JSON, written atomically.

Why: loading a checkpoint must not be able to run code, so nothing here
pickles (no torch.save / torch.load): tensors go to safetensors, everything
else to JSON. And a kill at any moment must leave either the old checkpoint
or the new one, never half of one: each folder is written into a hidden
`.tmp-<token>-<name>` sibling, every file and the folder are fsynced, and the
folder is renamed into place with one `os.replace`.

Two kinds of folder:

  pretrained (what ships, and what a run's `final/` is)
      config.json          {"kind": "video_tokenizer", "model": {...}}
      model.safetensors    the state dict, optionally stored in bf16

  training (OUT/checkpoints/step-00000200/: everything needed to resume)
      config.json, model.safetensors   as above, raw fp32 weights
      ema.safetensors                  EMA weights, when EMA is on
      train_config.json                TrainConfig.to_dict()
      optimizer.safetensors            AdamW state tensors: state.<param_index>.exp_avg, ...
      optimizer.json                   param_groups, non-tensor state, param names
      rng.safetensors                  torch RNG state of every rank (uint8): cpu.<rank>, cuda.<rank>
      trainer_state.json               {"step": 200, "world_size": 2, ...}
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

STEP_DIR = re.compile(r"^step-(\d{8})$")
STALE = re.compile(r"^\.(tmp|old)-([0-9a-f]{8})-(.+)$")
TRAIN_FILES = (
    "config.json",
    "train_config.json",
    "model.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "rng.safetensors",
    "trainer_state.json",
)


class CheckpointError(ValueError):
    """A checkpoint folder that is damaged, of the wrong kind, or does not fit the model; the message names it."""


# ------------------------------------------------------------------ atomic folders


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_stale(parent: Path, name: str | None = None) -> None:
    """Remove what an interrupted `atomic_directory` left in `parent` (for `name`, or for every name).

    A `.tmp-…` folder is an unfinished write: deleted. An `.old-…` folder is a
    previous version moved aside just before the new one was renamed in: if
    the kill came between the two renames it is put back, else deleted.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        m = STALE.match(entry.name)
        if not m or (name is not None and m.group(3) != name):
            continue
        target = parent / m.group(3)
        if m.group(1) == "old" and not target.exists():
            os.replace(entry, target)
        else:
            shutil.rmtree(entry, ignore_errors=True)


@contextmanager
def atomic_directory(target: Path):
    """Yield an empty temporary folder; on a clean exit it becomes `target` in one rename.

    An existing `target` is replaced: moved aside to `.old-…`, the new folder
    renamed in, the old one deleted (`clean_stale` repairs a kill in between).
    On an exception the temporary folder is removed and `target` is untouched.
    """
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale(parent, target.name)
    token = secrets.token_hex(4)
    tmp = parent / f".tmp-{token}-{target.name}"
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        old = None
        if target.exists():
            old = parent / f".old-{token}-{target.name}"
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync(parent)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------ files


def write_json(path: Path, obj) -> None:
    """Written beside and moved into place, so a kill leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: malformed JSON ({e})") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a dict of tensors to a safetensors file (CPU, contiguous; shared storage is copied)."""
    out, storages = {}, set()
    for key, t in tensors.items():
        t = t.detach().cpu().contiguous()
        if t.numel() > 0:
            # safetensors refuses tensors that share memory (tied weights): store a copy.
            storage = t.untyped_storage().data_ptr()
            if storage in storages:
                t = t.clone()
            storages.add(storage)
        out[key] = t
    save_file(out, str(path), metadata={"format": "pt"})


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing file")
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


# ------------------------------------------------------------------ pretrained folders


def save_pretrained(path, state_dict: dict[str, torch.Tensor], config: dict, dtype: torch.dtype | None = None,
                    extra_files: dict[str, Path] | None = None) -> Path:
    """Write `config.json` + `model.safetensors` into the folder `path`, atomically.

    `config` is the whole config.json (by convention {"kind": ..., "model": {...}});
    `dtype` (e.g. torch.bfloat16) casts the floating tensors, halving shipped weights;
    `extra_files` (name -> file) are copied in, inside the same atomic write.
    """
    try:
        config_text = json.dumps(config)
    except TypeError as e:
        raise ValueError(f"save_pretrained({path}): config is not JSON-safe ({e})") from None
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    with atomic_directory(Path(path)) as tmp:
        write_json(tmp / "config.json", json.loads(config_text))
        save_tensors(tmp / "model.safetensors", state_dict)
        copy_files(tmp, extra_files)
    return Path(path)


def copy_files(folder: Path, files: dict[str, Path] | None) -> None:
    """Copy each file to folder/name (files a model needs beside its weights, e.g. its text tokenizer)."""
    for name, src in (files or {}).items():
        shutil.copyfile(src, folder / name)


def load_pretrained(path, expected_kind: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json as a dict, state dict) of a pretrained folder; floating tensors come back in fp32."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path}: no such folder")
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / 'config.json'}: expected a JSON object, got {type(config).__name__}")
    if expected_kind is not None:
        if "kind" not in config:
            raise CheckpointError(f"checkpoint {path} has no 'kind' in config.json, expected {expected_kind!r}")
        if config["kind"] != expected_kind:
            raise CheckpointError(f"checkpoint {path} is a {config['kind']!r}, expected {expected_kind!r}")
    state = load_tensors(path / "model.safetensors")
    state = {k: v.float() if v.is_floating_point() and v.element_size() < 4 else v for k, v in state.items()}
    return config, state


def mean_state(states: list[dict[str, torch.Tensor]], names: list[str]) -> dict[str, torch.Tensor]:
    """The tensor-wise mean of state dicts with the same names and shapes (weight averaging of runs that started
    from one checkpoint: tensors they all share stay as they are); floating tensors in fp32. names: one label per
    state, for the error."""
    first = states[0]
    for state, name in zip(states[1:], names[1:]):
        differ = sorted(set(first) ^ set(state)) + [k for k in first if k in state and first[k].shape != state[k].shape]
        if differ:
            raise CheckpointError(f"cannot average {name} with {names[0]}: tensors differ in name or shape: "
                                  f"{_first(differ)}")
    return {k: torch.stack([s[k].float() for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in first.items()}


def _first(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", … and {len(items) - n} more" if len(items) > n else "")


def load_state_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str) -> None:
    """model.load_state_dict(state_dict), but a mismatch is a CheckpointError that lists what differs."""
    check_state_fits(model, state_dict, where)
    model.load_state_dict(state_dict, strict=True)


def check_state_fits(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str) -> None:
    """Raise a CheckpointError listing the missing, unexpected and misshapen keys, if any.

    Works on an FSDP-sharded model too: its state dict holds DTensors, whose shape is the full one.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: checkpoint {list(state_dict[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_first(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {_first(shapes)}")
    if problems:
        raise CheckpointError(f"{where}: the weights do not fit {type(model).__name__}: " + "; ".join(problems))


# ------------------------------------------------------------------ optimizer state


def flatten_optimizer_state(state: dict, param_names: list[str]) -> tuple[dict[str, torch.Tensor], dict]:
    """optimizer.state_dict() -> (tensors for safetensors, the rest for JSON).

    Tensors become `state.<param_index>.<name>` (exp_avg, exp_avg_sq, step);
    non-tensor state and the param_groups go to JSON, with the parameter names
    in optimizer order so that a resume can check them.
    """
    tensors, other = {}, {}
    for index, per_param in state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{name}"] = value
            else:
                other.setdefault(str(index), {})[name] = value
    for group in state["param_groups"]:
        bad = [k for k, v in group.items() if torch.is_tensor(v)]
        if bad:
            raise ValueError(f"optimizer param_group values {bad} are tensors; only plain numbers can be saved")
    meta = {"param_groups": state["param_groups"], "state": other, "param_names": param_names}
    return tensors, meta


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of `flatten_optimizer_state`: a dict for optimizer.load_state_dict."""
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = t
    for index, per_param in meta["state"].items():
        state.setdefault(int(index), {}).update(per_param)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------ training checkpoints


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints under `root`, oldest first (hidden and partial folders are skipped)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        m = STEP_DIR.match(entry.name)
        if m and entry.is_dir() and all((entry / f).is_file() for f in TRAIN_FILES):
            found.append((int(m.group(1)), entry))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints."""
    for _, path in list_checkpoints(root)[:-keep]:
        shutil.rmtree(path)


@dataclass
class TrainCheckpoint:
    path: Path
    config: dict  # config.json: {"kind": ..., "model": {...}}
    train_config: dict  # TrainConfig.to_dict()
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor] | None
    optimizer_state: dict  # for optimizer.load_state_dict
    param_names: list[str]  # parameter names in optimizer order
    rng: dict[str, torch.Tensor]  # cpu.<rank>, cuda.<rank>: uint8 RNG states
    trainer_state: dict  # {"step": ..., "world_size": ..., ...}

    @property
    def step(self) -> int:
        return int(self.trainer_state["step"])


def save_train_checkpoint(
    path: Path,
    *,
    config: dict,
    train_config: dict,
    model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict,
    param_names: list[str],
    rng: dict[str, torch.Tensor],
    trainer_state: dict,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write one training checkpoint folder atomically (layout in the module docstring); extra_files as
    save_pretrained's."""
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer_state, param_names)
    with atomic_directory(Path(path)) as tmp:
        write_json(tmp / "config.json", config)
        write_json(tmp / "train_config.json", train_config)
        save_tensors(tmp / "model.safetensors", model_state)
        if ema_state is not None:
            save_tensors(tmp / "ema.safetensors", ema_state)
        save_tensors(tmp / "optimizer.safetensors", opt_tensors)
        write_json(tmp / "optimizer.json", opt_meta)
        save_tensors(tmp / "rng.safetensors", rng)
        write_json(tmp / "trainer_state.json", trainer_state)
        copy_files(tmp, extra_files)
    return Path(path)


def load_train_checkpoint(path: Path) -> TrainCheckpoint:
    path = Path(path)
    opt_meta = read_json(path / "optimizer.json")
    ema_path = path / "ema.safetensors"
    return TrainCheckpoint(
        path=path,
        config=read_json(path / "config.json"),
        train_config=read_json(path / "train_config.json"),
        model_state=load_tensors(path / "model.safetensors"),
        ema_state=load_tensors(ema_path) if ema_path.is_file() else None,
        optimizer_state=unflatten_optimizer_state(load_tensors(path / "optimizer.safetensors"), opt_meta),
        param_names=opt_meta["param_names"],
        rng=load_tensors(path / "rng.safetensors"),
        trainer_state=read_json(path / "trainer_state.json"),
    )


def config_differences(saved, given, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ, e.g. ['model.width (saved 64, now 128)']."""
    if isinstance(saved, dict) and isinstance(given, dict):
        out = []
        for key in sorted(set(saved) | set(given), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved:
                out.append(f"{name} (not in the saved run, now {given[key]!r})")
            elif key not in given:
                out.append(f"{name} (saved {saved[key]!r}, now absent)")
            else:
                out.extend(config_differences(saved[key], given[key], name))
        return out
    return [] if saved == given else [f"{prefix} (saved {saved!r}, now {given!r})"]
