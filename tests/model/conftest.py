"""World-model fixtures: one tiny pipeline per session (untrained tiny world model, text tokenizer trained on a
few sentences, tiny video and audio tokenizers) and the same pipeline saved as checkpoints in a temporary folder."""

import pytest
import torch

from kinema.model.config import KIND
from kinema.model.pipeline import Pipeline
from kinema.tokenize import audio, video
from kinema.tokenize.text import TextTokenizer
from kinema.train.checkpoint import save_pretrained
from tests.model.helpers import SENTENCES, VIDEO_PRESET, tiny_config, tiny_model


@pytest.fixture(scope="session")
def text_tokenizer():
    return TextTokenizer.train(SENTENCES, vocab_size=300)


@pytest.fixture(scope="session")
def tiny_pipeline(text_tokenizer):
    torch.manual_seed(0)
    vt = video.VideoTokenizer(video.get_preset(VIDEO_PRESET)).eval()
    at = audio.AudioTokenizer(audio.get_preset("tiny")).eval()
    cfg = tiny_config()
    assert (cfg.latent_channels, cfg.temporal_compression, cfg.spatial_compression) == (
        vt.cfg.latent_channels, vt.cfg.temporal_compression, vt.cfg.spatial_compression)
    assert cfg.audio_channels == at.cfg.latent_channels and cfg.audio_rate == at.cfg.frame_rate
    assert text_tokenizer.vocab_size <= cfg.vocab_size
    return Pipeline(tiny_model(cfg), text_tokenizer, vt, at, device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def saved(tiny_pipeline, tmp_path_factory):
    """{"root", "model", "video", "audio"}: the tiny pipeline as checkpoint folders (tokenizers beside the model,
    under the names its config gives)."""
    root = tmp_path_factory.mktemp("checkpoints")
    p = tiny_pipeline
    paths = {"root": root, "model": root / "world-model-tiny", "video": root / p.config.video_tokenizer,
             "audio": root / p.config.audio_tokenizer}
    for key, kind, tok in (("video", video.KIND, p.video_tokenizer), ("audio", audio.KIND, p.audio_tokenizer)):
        save_pretrained(paths[key], tok.state_dict(), {"kind": kind, "model": tok.cfg.to_dict()})
    save_pretrained(paths["model"], p.model.state_dict(), {"kind": KIND, "model": p.config.to_dict()})
    p.text.save(paths["model"])
    return paths
