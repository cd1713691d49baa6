"""Loading a checkpoint folder by the `kind` in its config.json, for the predictor, judge and policy registries.

Each registry keeps its own `{kind: fn}` table, filled by `register_*_loader`;
`load_from_checkpoint` reads the folder's kind, imports LOADER_MODULES (when
they exist) so that they can register their loaders, and calls
`fn(path, **options)`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

# modules imported before a checkpoint's kind is looked up: they register their loaders
LOADER_MODULES = ["kinema.model"]


def load_from_checkpoint(spec: str, loaders: dict[str, Callable[..., object]], what: str, hint: str, **options):
    """`loaders[kind](path, **options)` for the checkpoint folder `spec` of that kind.

    what: what the folder holds ("world-model", "judge", "policy"), for errors; hint: who registers a
    loader and with which call, for the error when no loader is registered for the kind.
    """
    path = Path(spec)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{what} {spec}: expected a checkpoint folder with config.json (and model.safetensors); "
                         "no config.json there")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {spec}: config.json is not valid JSON ({e})") from e
    kind = cfg.get("kind") if isinstance(cfg, dict) else None
    if not isinstance(kind, str):
        raise ValueError(f"{what} {spec}: config.json has no \"kind\" string saying which {what} it holds")
    for module in LOADER_MODULES:
        if kind not in loaders and importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    if kind not in loaders:
        known = ", ".join(sorted(loaders)) or "none yet"
        raise ValueError(f"{what} {spec}: no {what} loader registered yet for kind {kind!r} (registered: {known}); "
                         f"{hint}")
    return loaders[kind](path, **options)
