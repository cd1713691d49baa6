"""Build a tokenizer from a checkpoint folder (config.json + model.safetensors; never pickle)."""

from __future__ import annotations

import torch

from kinema.train.checkpoint import load_pretrained, load_state_strict


def load_tokenizer(path, kind: str | None = None, device: str | torch.device = "cpu"):
    """The video or audio tokenizer stored at `path` (its kind read from config.json), in eval mode."""
    from kinema.tokenize import audio, video

    builders = {video.KIND: (video.VideoTokenizerConfig, video.VideoTokenizer),
                audio.KIND: (audio.AudioTokenizerConfig, audio.AudioTokenizer)}
    config, state = load_pretrained(path, expected_kind=kind)
    if config.get("kind") not in builders:
        raise ValueError(f"checkpoint {path} holds a {config.get('kind')!r}, not a tokenizer ({', '.join(builders)})")
    cfg_cls, model_cls = builders[config["kind"]]
    try:
        cfg = cfg_cls.from_dict(config["model"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint {path}: its config does not describe a {config['kind']}: {e}") from e
    model = model_cls(cfg)
    load_state_strict(model, state, where=str(path))
    return model.to(device).eval()
