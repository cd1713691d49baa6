"""End to end through the `kinema tokenizer` command on a tiny simulated dataset."""

import json

import numpy as np
import torch
import pytest

from kinema.cli import main
from kinema.data.video_io import decode_video, encode_video
from kinema.worlds.generate import generate


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    generate("free_fall", 2, 0, root / "free_fall", size=32, frames=17, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for preset in ("cv4x8x8-tiny", "dv4x8x8-tiny", "audio-tiny"):
        assert main(["tokenizer", "train", "--preset", preset, "--data", str(data), "--out", str(runs / preset),
                     "--steps", "2", "--batch-size", "2", "--ckpt-every", "2", "--dtype", "fp32"]) == 0
        out[preset] = runs / preset / "final"
        assert (out[preset] / "model.safetensors").is_file() and (out[preset] / "config.json").is_file()
    return out


def test_encode_decode_reconstruct(data, trained, tmp_path, capsys):
    frames = decode_video(next((data / "free_fall" / "videos").glob("*/*/*.mp4")), 0, 17)
    src = encode_video(tmp_path / "clip.mp4", frames, 16)
    for preset in ("cv4x8x8-tiny", "dv4x8x8-tiny"):
        lat = tmp_path / f"{preset}.safetensors"
        assert main(["tokenizer", "encode", str(src), str(lat), "--tokenizer", str(trained[preset])]) == 0
        assert main(["tokenizer", "decode", str(lat), str(tmp_path / f"{preset}.mp4")]) == 0
        back = decode_video(tmp_path / f"{preset}.mp4")
        assert back.shape == frames.shape
    assert "indices [1, 5, 4, 4]" in capsys.readouterr().out
    for preset in ("cv4x8x8-tiny", "dv4x8x8-tiny"):
        assert main(["tokenizer", "reconstruct", str(src), "--tokenizer", str(trained[preset]),
                     "--out", str(tmp_path / preset)]) == 0
        assert decode_video(tmp_path / preset / "clip_reconstruction.mp4").shape == (17, 32, 64, 3)  # side by side
        assert (tmp_path / preset / "clip_reconstruction.png").stat().st_size > 1000
        assert "PSNR" in capsys.readouterr().out
    # one episode of a dataset folder, read alone (its mp4 holds both episodes back to back)
    out = tmp_path / "episode"
    assert main(["tokenizer", "reconstruct", str(data / "free_fall"), "--episode", "1", "--camera", "front",
                 "--tokenizer", str(trained["cv4x8x8-tiny"]), "--out", str(out)]) == 0
    assert decode_video(out / "free_fall_episode1_front_reconstruction.mp4").shape == (17, 32, 64, 3)
    assert main(["tokenizer", "reconstruct", str(data / "free_fall"), "--episode", "2", "--out", str(out)]) == 2
    assert "--episode 2" in capsys.readouterr().err
    assert main(["tokenizer", "reconstruct", str(data / "free_fall"), "--camera", "back", "--out", str(out)]) == 2
    assert "back" in capsys.readouterr().err
    assert main(["tokenizer", "reconstruct", str(src), "--episode", "0", "--out", str(out)]) == 2
    assert "dataset folder" in capsys.readouterr().err


def test_audio_wav_round_trip(trained, tmp_path):
    from kinema.tokenize.cli import _read_wav, _write_wav

    t = np.arange(16000) / 16000
    _write_wav(tmp_path / "a.wav", 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-5 * t), 16000)
    assert main(["tokenizer", "encode", str(tmp_path / "a.wav"), str(tmp_path / "a.safetensors"),
                 "--tokenizer", str(trained["audio-tiny"])]) == 0
    assert main(["tokenizer", "decode", str(tmp_path / "a.safetensors"), str(tmp_path / "b.wav")]) == 0
    samples, rate = _read_wav(tmp_path / "b.wav")
    assert rate == 16000 and samples.shape == (16000,)


def test_eval_reports_per_scenario_and_h264_at_equal_rate(data, trained, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["tokenizer", "eval", "--data", str(data), "--tokenizer", str(trained["dv4x8x8-tiny"]),
                 str(trained["audio-tiny"]), "--clip-len", "17", "--episodes", "1", "--h264", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    dv = r[str(trained["dv4x8x8-tiny"])]
    assert set(dv["per_scenario"]) == {"free_fall"}
    assert dv["bpp"] == pytest.approx(5 * 4 * 4 * np.log2(64000) / (17 * 32 * 32))
    assert "psnr" in dv["h264_at_same_bpp"] and "convention" in dv
    crfs = r["h264"]["curve"]
    assert crfs[0]["mean"]["psnr"] > crfs[-1]["mean"]["psnr"] and crfs[0]["bpp"] > crfs[-1]["bpp"]
    assert "snr" in r[str(trained["audio-tiny"])]["mean"]


def test_mismatched_checkpoint_and_bad_paths_get_clear_errors(trained, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained["cv4x8x8-tiny"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["channels"] = 16
    (bad / "config.json").write_text(json.dumps(cfg))
    assert main(["tokenizer", "reconstruct", "nothing.mp4", "--tokenizer", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "shape" in err and str(bad) in err
    assert main(["tokenizer", "reconstruct", "nothing.mp4", "--tokenizer", str(tmp_path / "none")]) == 2
    assert main(["tokenizer", "eval", "--data", str(tmp_path / "none"), "--tokenizer", str(trained["cv4x8x8-tiny"])]) == 2
    with pytest.raises(SystemExit):
        main(["tokenizer", "train", "--preset", "cv4x8x8-tiny", "--data", "x"])  # --out is required
    (tmp_path / "not_latents.safetensors").write_text("plain text")
    assert main(["tokenizer", "decode", str(tmp_path / "not_latents.safetensors"), str(tmp_path / "x.mp4")]) == 2
    assert "not a latent file" in capsys.readouterr().err


def test_decoder_fine_tune_keeps_the_latents(data, trained, tmp_path, capsys):
    """--init --freeze-encoder: the decoder moves, the encoder (hence every latent) is bit-identical."""
    from kinema.train.checkpoint import load_pretrained

    for preset in ("cv4x8x8-tiny", "dv4x8x8-tiny", "audio-tiny"):  # the audio run found by its checkpoint's kind
        out = tmp_path / preset
        assert main(["tokenizer", "train", "--init", str(trained[preset]), "--freeze-encoder", "--data", str(data),
                     "--out", str(out), "--steps", "3", "--batch-size", "2", "--lr", "0.01", "--warmup", "1",
                     "--ema-decay", "0", "--dtype", "fp32"]) == 0
        cfg0, before = load_pretrained(trained[preset])
        cfg1, after = load_pretrained(out / "final")
        assert cfg1["kind"] == cfg0["kind"] and cfg1["model"] == cfg0["model"]
        encoder = [k for k in before if k.startswith(("encoder.", "quant_conv.", "analysis."))]
        assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(("decoder.", "synthesis.")))
    assert main(["tokenizer", "train", "--freeze-encoder", "--preset", "cv4x8x8-tiny", "--data", str(data),
                 "--out", str(tmp_path / "x")]) == 2
    assert "--init" in capsys.readouterr().err
    assert main(["tokenizer", "train", "--init", str(trained["cv4x8x8-tiny"]), "--preset", "cv4x8x8-tiny",
                 "--data", str(data), "--out", str(tmp_path / "y")]) == 2
    assert "--preset" in capsys.readouterr().err


def test_ablation_flags_are_saved_in_the_config(data, tmp_path, capsys):
    out = tmp_path / "ortho"
    assert main(["tokenizer", "train", "--preset", "cv4x8x8-tiny", "--orthonormal-wavelet", "--data", str(data),
                 "--out", str(out), "--steps", "1", "--batch-size", "2", "--dtype", "fp32"]) == 0
    model = json.loads((out / "final" / "config.json").read_text())["model"]
    assert model["wavelet"] is True and model["wavelet_rescale"] is False
    assert main(["tokenizer", "train", "--preset", "cv4x8x8-tiny", "--orthonormal-wavelet", "--no-wavelet",
                 "--data", str(data), "--out", str(tmp_path / "both")]) == 2
    assert "one" in capsys.readouterr().err and not (tmp_path / "both").exists()


def test_a_whitened_run_saves_its_band_rms_and_reloads_to_the_same_reconstruction(data, tmp_path):
    from kinema.tokenize.load import load_tokenizer
    from kinema.tokenize.video import PATCH_CHANNELS

    out = tmp_path / "white"
    assert main(["tokenizer", "train", "--preset", "cv4x8x8-tiny", "--whiten", "both", "--data", str(data),
                 "--out", str(out), "--steps", "1", "--batch-size", "2", "--dtype", "fp32"]) == 0
    model = json.loads((out / "final" / "config.json").read_text())["model"]
    assert model["whiten"] == "both" and len(model["band_rms"]) == PATCH_CHANNELS
    tok = load_tokenizer(out / "final")
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    assert torch.equal(tok.band_scale.flatten(), torch.tensor(model["band_rms"]))
    with torch.no_grad():
        assert torch.equal(tok(x)[0], load_tokenizer(out / "final")(x)[0])
