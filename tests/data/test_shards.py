"""webdataset export and read-back."""

import tarfile

import pytest
import webdataset as wds

from kinema.data.reader import EpisodeStore
from kinema.data.shards import export_webdataset, iter_webdataset, sample_to_episode

from .conftest import assert_episode_equal


def test_round_trip_equals_store(dataset, tmp_path):
    shards = export_webdataset(dataset, tmp_path / "wds", maxcount=2, progress=False)
    assert [p.rsplit("/", 1)[1] for p in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert not list((tmp_path / "wds").glob("*.tmp"))
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
    assert "episode_000000.frames.front.mp4" in names and "episode_000001.meta.json" in names
    assert "episode_000000.masks.top.npy" in names

    store = EpisodeStore(dataset)
    samples = list(iter_webdataset(shards))
    assert [s["episode_index"] for s in samples] == list(range(len(store)))
    for s in samples:
        assert s["__key__"] == f"episode_{s['episode_index']:06d}"
        assert_episode_equal(sample_to_episode(s), store.episode(s["episode_index"]))


def test_existing_shards_refused_and_failed_export_publishes_nothing(dataset, tmp_path, monkeypatch):
    out = tmp_path / "wds"
    export_webdataset(dataset, out, maxcount=10, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_webdataset(dataset, out, progress=False)

    import kinema.data.shards as shards_mod

    real = shards_mod.episode_sample

    def dies_at_3(ep, index):
        if index == 3:
            raise RuntimeError("killed")
        return real(ep, index)

    monkeypatch.setattr(shards_mod, "episode_sample", dies_at_3)
    with pytest.raises(RuntimeError, match="killed"):
        export_webdataset(dataset, out, maxcount=2, overwrite=True, progress=False)
    # shard 0 (episodes 0-1) was complete; the half shard holding episode 2 is not published
    assert sorted(p.name for p in out.iterdir()) == ["shard-000000.tar"]


def test_webdataset_pipeline_in_dataloader(dataset, tmp_path):
    shards = export_webdataset(dataset, tmp_path / "wds", maxcount=3, progress=False)
    loader = wds.WebLoader(iter_webdataset(shards), batch_size=None, num_workers=2)
    assert sorted(s["episode_index"] for s in loader) == [0, 1, 2, 3, 4]
