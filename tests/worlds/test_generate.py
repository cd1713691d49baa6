import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kinema.cli import main
from kinema.data.lerobot import validate_dataset
from kinema.data.reader import EpisodeStore
from kinema.worlds.generate import episode_seed, generate
from kinema.worlds.registry import get_world
from kinema.worlds.rollout import rollout

SMALL = dict(size=32, frames=9)


def test_generated_dataset_is_valid_and_matches_the_simulator_exactly(tmp_path):
    out = generate("free_fall", 3, 11, tmp_path / "ds", twins=True, progress=False, episodes_per_file=2, **SMALL)
    summary = validate_dataset(out)
    store = EpisodeStore(out)
    assert len(store) == 6
    for i in (0, 1, 4):
        ep = store.episode(i)
        ref = rollout(get_world("free_fall"), episode_seed(11, i // 2), violation=None if i % 2 == 0 else "random", **SMALL)
        # lossless video: frames decoded from the mp4 equal the rendered ones, bit for bit
        for cam in ref.cameras:
            assert np.array_equal(ep.frames[cam], ref.frames[cam])
            assert np.array_equal(ep.masks[cam], ref.masks[cam])
        assert np.array_equal(ep.objects, ref.objects) and np.array_equal(ep.audio, ref.audio)
        assert ep.qa == ref.qa and ep.caption == ref.caption
        assert ep.info["plausible"] == (i % 2 == 0)
        if i % 2:
            assert ep.info["twin_of"] == i - 1
    assert summary


def test_a_killed_run_resumes_without_duplicates_and_matches_an_uninterrupted_one(tmp_path):
    args = ["--scenario", "dominoes", "--episodes", "6", "--seed", "3", "--size", "32", "--frames", "17"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "kinema.cli", "worlds", "generate", *args]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = killed / ".staging"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(staging.glob("episode-*.npz"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "meta" / "info.json").exists()
    with pytest.raises(ValueError, match="unfinished"):
        EpisodeStore(killed)
    assert main(["worlds", "generate", *args, "--out", str(killed)]) == 0
    assert main(["worlds", "generate", *args, "--out", str(tmp_path / "clean")]) == 0
    assert not staging.exists()
    a, b = EpisodeStore(killed), EpisodeStore(tmp_path / "clean")
    assert len(a) == len(b) == 6
    for i in range(6):
        ea, eb = a.episode(i), b.episode(i)
        assert ea.seed == eb.seed and np.array_equal(ea.frames["front"], eb.frames["front"])
    validate_dataset(killed)


def test_rerunning_a_finished_run_is_a_no_op_and_other_settings_are_refused(tmp_path):
    out = generate("seesaw", 1, 0, tmp_path / "ds", progress=False, **SMALL)
    mtime = (out / "meta" / "info.json").stat().st_mtime_ns
    generate("seesaw", 1, 0, out, progress=False, **SMALL)
    assert (out / "meta" / "info.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="other settings"):
        generate("seesaw", 2, 0, out, progress=False, **SMALL)


def test_a_corrupt_staging_file_names_the_file(tmp_path):
    ep = rollout(get_world("free_fall"), 0, **SMALL)
    path = tmp_path / "episode.npz"
    ep.save(path)
    path.write_bytes(path.read_bytes()[:200])
    from kinema.data.episode import Episode

    with pytest.raises(ValueError, match="episode.npz"):
        Episode.load(path)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--scenario", "nope", "--episodes", "1"], "unknown scenario 'nope'"),
        (["--scenario", "free_fall", "--episodes", "0"], "--episodes must be at least 1"),
        (["--scenario", "free_fall", "--episodes", "1", "--size", "7"], "--size must be"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, capsys, argv, message):
    assert main(["worlds", "generate", *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err


def test_unwritable_output_directory_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["worlds", "generate", "--scenario", "free_fall", "--episodes", "1", "--out", str(blocker / "ds")]) == 2
    assert "cannot write to output directory" in capsys.readouterr().err


def test_preview_writes_a_contact_sheet_and_a_video(tmp_path):
    from kinema.data.video_io import decode_video
    from kinema.worlds.preview import preview

    out = generate("stable_stack", 2, 0, tmp_path / "ds", progress=False, **SMALL)
    png, mp4 = preview(out, tmp_path / "pv")
    import cv2

    sheet = cv2.imread(str(png))
    assert sheet.shape[0] == 2 * 4 * 64  # 2 episodes x 4 cameras, 2x upscaled
    video = decode_video(mp4)
    assert video.shape[0] == 9 and video.shape[1:3] == (2 * 64, 4 * 64)


def test_worlds_list_names_every_scenario(capsys):
    assert main(["worlds", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("free_fall", "gyroscope", "camera_motion"):
        assert name in out


def test_preview_of_a_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["worlds", "preview", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err


def test_parallel_workers_give_the_same_episodes(tmp_path):
    a = generate("free_fall", 3, 5, tmp_path / "a", workers=2, progress=False, **SMALL)
    b = generate("free_fall", 3, 5, tmp_path / "b", workers=1, progress=False, **SMALL)
    for name in ("data/chunk-000/file-000.parquet",):
        assert (Path(a) / name).read_bytes() == (Path(b) / name).read_bytes()
