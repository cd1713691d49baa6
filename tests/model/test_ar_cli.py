"""`kinema ar generate`: the shipped AR world model continues a video; bad requests fail before it loads."""

import json
from pathlib import Path

import numpy as np
import pytest

from kinema.cli import main
from kinema.data.video_io import decode_video, encode_video
from tests.model.helpers import random_frames

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "ar-world-model-small"
pytestmark = pytest.mark.skipif(not (SHIPPED / "config.json").exists(), reason="no shipped AR world model")


@pytest.fixture
def clip(tmp_path):
    return encode_video(tmp_path / "clip.mp4", random_frames(9, size=64), 16.0)


def test_generate_continues_the_video_to_num_frames(clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ar", "generate", "--vision_path", str(clip), "--context_frames", "5", "--num_frames", "9",
                 "--medusa", "--out", str(out)]) == 0
    frames = decode_video(out / "video.mp4")
    assert frames.shape == (9, 64, 64, 3)
    assert np.array_equal(frames[:5], decode_video(clip)[:5])  # the given frames open it, as given
    assert (out / "contact.png").stat().st_size > 0
    assert json.loads((out / "request.json").read_text())["medusa"] is True
    assert "generated frames/s" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--context_frames", "3"], "context_frames: expected 1, 5 or 9"),
    (["--num_frames", "9"], "num_frames: expected more than context_frames (9)"),
    (["--medusa", "--temperature", "0.7"], "Medusa decoding is greedy"),
    (["--model", "nowhere"], "model: nowhere is not a checkpoint folder"),
    (["--action_path", "ACTIONS"], "action_path: expected one row per frame of the result (33), got 4"),
])
def test_bad_requests_fail_before_the_model_loads(clip, tmp_path, capsys, monkeypatch, args, message):
    import kinema.model.ar_predictor as ar_predictor

    monkeypatch.setattr(ar_predictor, "load_predictor", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "a.json").write_text(json.dumps(np.zeros((4, 10)).tolist()))
    args = [str(tmp_path / "a.json") if a == "ACTIONS" else a for a in args]
    assert main(["ar", "generate", "--vision_path", str(clip), *args, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_eval_takes_the_ar_models_decoding_and_keeps_its_results_apart(tmp_path, capsys):
    common = ["--model", str(SHIPPED), "--quick", "--scenarios", "free_fall", "--cameras", "front", "--out",
              str(tmp_path), "--no-progress"]
    assert main(["eval", "physics", *common, "--medusa"]) == 0
    run = tmp_path / "physics" / "ar_world_model_medusa"
    assert (run / "summary.json").exists() and json.loads((run / "run.json").read_text())
    capsys.readouterr()
    diffusion = Path(__file__).resolve().parents[2] / "checkpoints" / "world-model-small"
    assert main(["eval", "physics", "--model", str(diffusion), "--temperature", "0.5", "--quick", "--out",
                 str(tmp_path), "--no-progress"]) == 2
    assert "'temperature' does not apply to this kind of world model" in capsys.readouterr().err
