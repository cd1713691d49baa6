"""LeRobot v3.0 writer and validator."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from kinema.data.lerobot import DatasetError, validate_dataset, write_dataset

from .conftest import make_episode


@pytest.fixture
def damaged(dataset, tmp_path):
    """A private copy of the shared dataset to break."""
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    return root


def files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_write_then_validate(dataset, episodes):
    summary = validate_dataset(dataset)
    assert summary["total_episodes"] == 5
    assert summary["total_frames"] == sum(e.length for e in episodes)
    assert summary["total_tasks"] == 2 and summary["data_files"] == 3
    slots = [f"chunk-000/file-00{i}" for i in range(3)]
    expected = {f"{d}/{s}.parquet" for d in ("data", "masks", "audio", "meta/episodes") for s in slots}
    expected |= {f"videos/observation.images.{c}/{s}.mp4" for c in ("front", "top") for s in slots}
    expected |= {"meta/info.json", "meta/stats.json", "meta/tasks.parquet"}
    assert set(files(dataset)) == expected


def test_info_json(dataset, episodes):
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "kinema_arm"
    assert info["fps"] == 16 and info["splits"] == {"train": "0:5"} and info["total_tasks"] == 2
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    f = info["features"]
    assert f["observation.images.front"]["shape"] == [32, 48, 3] and f["observation.images.top"]["shape"] == [40, 40, 3]
    assert f["observation.images.front"]["info"]["video.pix_fmt"] == "rgb24"
    assert f["observation.state"] == {"dtype": "float32", "shape": [5], "names": episodes[0].info["state_names"]}
    assert f["action"]["names"] == episodes[0].info["action_names"]
    assert f["observation.objects"]["dtype"] == "float64" and f["observation.objects"]["shape"] == [39]
    assert f["observation.objects"]["names"][:2] == ["red_cube.x", "red_cube.y"]
    assert f["observation.camera.top.extrinsics"]["shape"] == [16]
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert f[key]["shape"] == [1]
    kin = info["kinema"]
    assert kin["cameras"] == ["front", "top"] and kin["sample_rate"] == 800 and kin["scenario"] == "tabletop"
    assert kin["masks_path"].startswith("masks/") and kin["audio_path"].startswith("audio/")


def test_parquet_layout(dataset, episodes):
    data = pq.read_table(dataset / "data/chunk-000/file-001.parquet")  # episodes 2 and 3
    assert data.schema.field("observation.state").type.list_size == 5
    assert data.schema.field("observation.objects").type.value_type.bit_width == 64
    assert data.num_rows == episodes[2].length + episodes[3].length
    assert pq.ParquetFile(dataset / "data/chunk-000/file-001.parquet").metadata.num_row_groups == 2
    ep_idx = data.column("episode_index").to_numpy()
    assert (ep_idx[: episodes[2].length] == 2).all() and (ep_idx[episodes[2].length :] == 3).all()
    assert data.column("index")[0].as_py() == sum(e.length for e in episodes[:2])
    assert np.array_equal(data.column("timestamp").to_numpy()[:4], np.arange(4, dtype=np.float32) / 16)

    masks = pq.ParquetFile(dataset / "masks/chunk-000/file-001.parquet")
    assert masks.metadata.row_group(0).column(3).compression == "ZSTD"
    assert masks.schema_arrow.field("observation.masks.front").type.byte_width == 32 * 48
    audio = pq.read_table(dataset / "audio/chunk-000/file-001.parquet")
    assert audio.column("episode_index").to_pylist() == [2, 3]
    assert np.array_equal(audio.column("samples")[1].values.to_numpy(), episodes[3].audio)

    tasks = pq.read_table(dataset / "meta/tasks.parquet")
    assert dict(zip(tasks.column("task").to_pylist(), tasks.column("task_index").to_pylist())) == {"stack the boxes": 0, "push the red_cube": 1}
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]


def test_episodes_meta(dataset, episodes):
    meta = pq.read_table(dataset / "meta/episodes/chunk-000/file-001.parquet").to_pylist()
    first, second = meta
    assert first["episode_index"] == 2 and first["tasks"] == [episodes[2].task] and first["length"] == episodes[2].length
    assert (first["data/chunk_index"], first["data/file_index"]) == (0, 1)
    key = "videos/observation.images.front"
    assert first[f"{key}/from_timestamp"] == 0 and second[f"{key}/from_timestamp"] == episodes[2].length / 16
    assert second[f"{key}/to_timestamp"] == (episodes[2].length + episodes[3].length) / 16
    assert second["dataset_from_index"] == first["dataset_to_index"]
    assert json.loads(first["kinema/qa"]) == episodes[2].qa and json.loads(first["kinema/seed"]) == 2
    assert np.allclose(first["stats/observation.state/mean"], episodes[2].state.mean(0))
    assert first["stats/observation.state/count"] == [episodes[2].length]


def test_stats_json(dataset, episodes):
    stats = json.loads((dataset / "meta/stats.json").read_text())
    state = np.concatenate([e.state for e in episodes]).astype(np.float64)
    assert np.allclose(stats["observation.state"]["mean"], state.mean(0))
    assert np.allclose(stats["observation.state"]["std"], state.std(0))
    assert stats["observation.state"]["count"] == [len(state)]
    img = stats["observation.images.top"]
    assert np.array(img["mean"]).shape == (3, 1, 1)
    pixels = np.concatenate([e.frames["top"].reshape(-1, 3) for e in episodes]) / 255
    assert np.allclose(np.array(img["mean"]).ravel(), pixels.mean(0))
    assert np.allclose(np.array(img["std"]).ravel(), pixels.std(0))  # pooled over episodes from their histograms
    assert np.allclose(np.array(img["min"]).ravel(), pixels.min(0))
    assert np.allclose(np.array(img["max"]).ravel(), pixels.max(0))


def test_image_stats_from_histograms_equal_numpys():
    from kinema.data.lerobot import _image_stats

    frames = np.random.default_rng(0).integers(3, 250, size=(5, 8, 8, 3), dtype=np.uint8)
    frames[0, 0, 0] = (7, 0, 255)  # a channel's extremes at the ends of the range
    s, x = _image_stats(frames), frames.reshape(-1, 3) / 255
    for key, want in (("min", x.min(0)), ("max", x.max(0)), ("mean", x.mean(0)), ("std", x.std(0))):
        assert s[key].shape == (3, 1, 1) and np.allclose(s[key].ravel(), want, rtol=0, atol=1e-12), key
    assert s["count"].tolist() == [5]


def test_chunk_rollover(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, [make_episode(s, T=10) for s in range(3)], episodes_per_file=1, chunks_size=2, progress=False)
    assert (root / "data/chunk-001/file-000.parquet").is_file()
    assert (root / "videos/observation.images.top/chunk-001/file-000.mp4").is_file()
    assert validate_dataset(root)["total_episodes"] == 3


def test_mismatched_episode_is_named_and_nothing_finished(tmp_path):
    bad = make_episode(7, T=10)
    bad.fps = 30.0
    root = tmp_path / "ds"
    with pytest.raises(ValueError, match=r"episode 2 .*seed 7.*fps"):
        write_dataset(root, [make_episode(0), make_episode(1), bad], episodes_per_file=2, progress=False)
    assert not (root / "meta/info.json").exists()
    assert not [f for f in files(root) if f.endswith(".tmp")]


def test_bad_stream_dtype_is_named(tmp_path):
    ep = make_episode(3)
    ep.state = ep.state.astype(np.float64)
    with pytest.raises(ValueError, match=r"episode 0 .*state: expected dtype float32"):
        write_dataset(tmp_path / "ds", [ep], progress=False)


def test_interrupted_write_then_rerun(tmp_path):
    root = tmp_path / "ds"

    def killed():
        for s in range(3):
            yield make_episode(s, T=10)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(root, killed(), episodes_per_file=2, progress=False)
    assert (root / "data/chunk-000/file-000.parquet").is_file()  # the finished file stays
    assert not (root / "meta/info.json").exists()
    assert not [f for f in files(root) if f.endswith(".tmp")]
    with pytest.raises(DatasetError, match="unfinished dataset"):
        validate_dataset(root)
    write_dataset(root, [make_episode(s, T=10) for s in range(1)], progress=False)  # rerun, fewer episodes
    assert validate_dataset(root)["total_episodes"] == 1
    with pytest.raises(FileExistsError, match="finished dataset"):
        write_dataset(root, [make_episode(0)], progress=False)


def test_validator_catches_deleted_file(damaged):
    path = damaged / "videos/observation.images.top/chunk-000/file-001.mp4"
    path.unlink()
    with pytest.raises(DatasetError, match="observation.images.top/chunk-000/file-001.mp4"):
        validate_dataset(damaged)


def test_validator_catches_deleted_audio(damaged):
    (damaged / "audio/chunk-000/file-002.parquet").unlink()
    with pytest.raises(DatasetError, match="audio/chunk-000/file-002.parquet: missing"):
        validate_dataset(damaged)


def test_validator_catches_truncated_mp4(damaged):
    path = damaged / "videos/observation.images.front/chunk-000/file-002.mp4"
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DatasetError, match="observation.images.front/chunk-000/file-002.mp4"):
        validate_dataset(damaged)


def test_validator_catches_truncated_parquet(damaged):
    path = damaged / "data/chunk-000/file-001.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="data/chunk-000/file-001.parquet"):
        validate_dataset(damaged)


def test_validator_catches_wrong_total_frames(damaged):
    path = damaged / "meta/info.json"
    info = json.loads(path.read_text())
    info["total_frames"] += 1
    path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"info\.json.*total_frames"):
        validate_dataset(damaged)


def test_validator_catches_extra_file(damaged):
    (damaged / "masks/chunk-000/file-009.parquet.tmp").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="file-009.parquet.tmp: unexpected file"):
        validate_dataset(damaged)


def test_validator_catches_swapped_rows(damaged):
    path = damaged / "masks/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    with pytest.raises(DatasetError, match="masks/chunk-000/file-000.parquet"):
        validate_dataset(damaged)


def test_unfinished_dataset(damaged):
    (damaged / "meta/info.json").unlink()
    with pytest.raises(DatasetError, match="unfinished dataset.*rerun the generate command"):
        validate_dataset(damaged)


def test_extra_info_lands_in_the_kinema_block(tmp_path):
    info = write_dataset(tmp_path / "ds", [make_episode(0, T=10)], progress=False, extra_info={"plan": {"seed": 3}})
    assert info["kinema"]["plan"] == {"seed": 3}
    assert json.loads((tmp_path / "ds/meta/info.json").read_text())["kinema"]["plan"] == {"seed": 3}
    with pytest.raises(ValueError, match="clash"):
        write_dataset(tmp_path / "other", [make_episode(0)], progress=False, extra_info={"fps": 1})
    assert not (tmp_path / "other").exists()


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"no dataset at .*missing"):
        validate_dataset(tmp_path / "missing")
