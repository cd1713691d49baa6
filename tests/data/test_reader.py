"""EpisodeStore round trip and ClipDataset."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from kinema.data.lerobot import DatasetError, validate_dataset, write_dataset
from kinema.data.reader import ClipDataset, EpisodeList, EpisodeStore

from .conftest import assert_episode_equal, make_episode


def test_store_round_trip_every_field(dataset, episodes):
    store = EpisodeStore(dataset)
    assert len(store) == len(episodes) and store.cameras == ["front", "top"] and store.fps == 16.0
    for i, want in enumerate(episodes):
        assert_episode_equal(store.episode(i), want)
    assert_episode_equal(store.episode(-1), episodes[-1])
    with pytest.raises(IndexError, match="holds 5 episodes"):
        store.episode(5)


def test_store_round_trip_fractional_fps_one_file(tmp_path):
    eps = [make_episode(s, T=9, fps=29.97) for s in (11, 12)]
    write_dataset(tmp_path / "ds", eps, codec="lossless", progress=False)
    store = EpisodeStore(tmp_path / "ds")
    for i, want in enumerate(eps):
        assert_episode_equal(store.episode(i), want)


def test_episode_list_reads_as_the_store_of_the_same_episodes(dataset, episodes):
    store, mem = EpisodeStore(dataset), EpisodeList(episodes, "in-memory")
    assert (len(mem), mem.cameras, mem.fps, mem.sample_rate) == (len(store), store.cameras, store.fps, store.sample_rate)
    for i in range(len(store)):
        want, got = store.read(i), mem.read(i)
        assert sorted(got) == sorted(want)
        for k, v in want.items():
            assert np.array_equal(got[k], v) and np.asarray(got[k]).dtype == np.asarray(v).dtype, k
        assert {k: v for k, v in store.meta[i].items() if k.startswith("kinema/") and "/" not in k[7:]} == \
            {k: v for k, v in mem.meta[i].items() if k.startswith("kinema/")}
        assert (mem.meta[i]["tasks"], mem.meta[i]["length"]) == (store.meta[i]["tasks"], store.meta[i]["length"])
    assert sorted(mem.read(0, cameras=["top"], frames=False, masks=False, audio=False)) == \
        sorted(store.read(0, cameras=["top"], frames=False, masks=False, audio=False))
    with pytest.raises(ValueError, match=r"cameras \['side'\] are not in in-memory"):
        mem.read(0, cameras=["side"])
    with pytest.raises(ValueError, match="no episodes"):
        EpisodeList([], "empty")


def test_unfinished_dataset_error(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    (root / "meta/info.json").unlink()
    with pytest.raises(DatasetError, match=r"unfinished dataset at .*copy.*rerun the generate command to finish it"):
        EpisodeStore(root)


def test_clip_shapes_and_contents(dataset, episodes):
    ds = ClipDataset(dataset, 6, stride=2)
    assert len(ds) == sum(len(range(0, e.length - 6 + 1, 2)) for e in episodes)
    for i in (0, 3, len(ds) - 1):
        item = ds[i]
        e, start = int(item["episode_index"]), int(item["frame_index"])
        ep, sl = episodes[e], slice(start, start + 6)
        assert start % 2 == 0 and start + 6 <= ep.length
        for cam in ep.cameras:
            assert item[f"observation.images.{cam}"].dtype == torch.uint8
            assert item[f"observation.images.{cam}"].shape == (6, *ep.frames[cam].shape[1:])
            assert np.array_equal(item[f"observation.images.{cam}"].numpy(), ep.frames[cam][sl])
            assert np.array_equal(item[f"observation.masks.{cam}"].numpy(), ep.masks[cam][sl])
            assert np.array_equal(item[f"observation.camera.{cam}.intrinsics"].numpy(), ep.intrinsics[cam][sl])
        assert np.array_equal(item["observation.state"].numpy(), ep.state[sl])
        assert np.array_equal(item["action"].numpy(), ep.action[sl])
        assert item["observation.objects"].shape == (6, 3, 13) and item["observation.objects"].dtype == torch.float64
        assert np.array_equal(item["observation.objects"].numpy(), ep.objects[sl])
        assert item["task"] == ep.task and item["caption"] == ep.caption
        assert float(item["timestamp"]) == pytest.approx(start / ep.fps)
        # audio: exactly the samples of [start / fps, (start + 6) / fps)
        n, a0 = round(6 / ep.fps * ep.sample_rate), round(start / ep.fps * ep.sample_rate)
        assert item["audio"].shape == (n,) and item["audio"].dtype == torch.float32
        assert np.array_equal(item["audio"].numpy(), ep.audio[a0 : a0 + n])


def test_clip_options(dataset, episodes):
    ds = ClipDataset(dataset, episodes[0].length, cameras=["top"], with_masks=False, with_audio=False)
    item = ds[0]
    assert "observation.images.front" not in item and "observation.masks.top" not in item and "audio" not in item
    assert np.array_equal(item["observation.images.top"].numpy(), episodes[0].frames["top"])
    with pytest.raises(ValueError, match="cameras"):
        ClipDataset(dataset, 4, cameras=["side"])
    with pytest.raises(ValueError, match="no clip of 99 frames"):
        ClipDataset(dataset, 99)


def test_dataloader_two_workers(dataset):
    ds = ClipDataset(dataset, 4, stride=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["episode_index"]) for b in batches) == len(ds)
    first = batches[0]
    assert first["observation.images.front"].shape == (4, 4, 32, 48, 3)
    assert isinstance(first["task"], list) and len(first["task"]) == 4
    assert not ds._cache  # the workers decoded; the parent holds nothing
    direct = ds[1]
    assert torch.equal(first["observation.images.top"][1], direct["observation.images.top"])
    assert torch.equal(first["audio"][1], direct["audio"])
    assert ds._cache and not pickle.loads(pickle.dumps(ds))._cache  # the cache never travels


def test_zero_width_streams_and_unused_object_slots(tmp_path):
    """A passive scene: no actions (A = 0), 3 objects in 5 slots, object count varying per episode."""
    eps = []
    for s in (0, 1):
        ep = make_episode(s, T=8)
        ep.action = np.zeros((8, 0), np.float32)
        ep.info["action_names"] = []
        ep.objects = np.concatenate([ep.objects, np.zeros((8, 2, 13))], axis=1)
        ep.objects_info = ep.objects_info[: 3 - s]
        eps.append(ep)
    info = write_dataset(tmp_path / "ds", eps, progress=False)
    assert "action" not in info["features"]
    assert info["features"]["observation.objects"]["names"][0] == "object0.x"
    validate_dataset(tmp_path / "ds")
    store = EpisodeStore(tmp_path / "ds")
    for i, want in enumerate(eps):
        assert_episode_equal(store.episode(i), want)
    assert ClipDataset(tmp_path / "ds", 4)[0]["action"].shape == (4, 0)
