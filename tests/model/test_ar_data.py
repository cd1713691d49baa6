"""DV codes of dataset clips (kinema.model.ar_data): stored once, resumed, served as token sequences."""

import json

import pytest
import torch

from kinema.data.lerobot import write_dataset
from kinema.model.ar_config import get_preset
from kinema.model.ar_data import CodeClips, build_codes
from kinema.tokenize import video
from tests.data.conftest import make_episode


def episode(seed, family):
    ep = make_episode(seed, T=37, scenario="dominoes")
    for cam in ep.cameras:  # one frame size for every camera (the worlds render all cameras alike)
        ep.frames[cam], ep.masks[cam] = ep.frames[cam][:, :32, :32], ep.masks[cam][:, :32, :32]
    ep.info = dict(scenario="dominoes", family=family, action_names=["a", "b", "c"])
    return ep


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    write_dataset(root / "physics", [episode(s, "physics") for s in range(2)], progress=False)
    write_dataset(root / "camera", [episode(5, "camera")], progress=False)
    torch.manual_seed(0)
    return root, video.VideoTokenizer(video.get_preset("dv4x8x8-tiny")).eval()


def test_codes_are_built_once_per_dataset_and_served_as_sequences(data, tmp_path):
    root, vt = data
    shards = build_codes(root, tmp_path / "codes", vt, stride=4, progress=False)
    assert len(shards) == 1 and "physics" in shards[0].name  # the camera family is not asked for
    meta = json.loads(shards[0].with_suffix(".json").read_text())
    assert len(meta["clips"]) == 2 * 2 * 2  # 2 episodes x 2 starts (0, 4) x 2 cameras
    cfg = get_preset("tiny")
    ds = CodeClips(shards, cfg)
    c = ds.codes(3)
    assert c["indices"].shape == (9, 4, 4) and c["actions"] is None  # physics: no embodiment
    x, _ = vt.encode(torch.as_tensor(ds_frames(root, meta["clips"][3])).permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
    assert torch.equal(c["indices"], x[0])  # the stored codes are the tokenizer's (fp32)
    tok = ds[3]
    assert len(tok) == 9 * 16 and (tok.target >= 0).sum() == 9 * 16 - 1
    # a second call reuses the shard; a shard without its JSON (killed run) is rebuilt
    mtime = shards[0].stat().st_mtime_ns
    assert build_codes(root, tmp_path / "codes", vt, stride=4, progress=False) == shards
    assert shards[0].stat().st_mtime_ns == mtime
    shards[0].with_suffix(".json").unlink()
    build_codes(root, tmp_path / "codes", vt, stride=4, progress=False)
    assert shards[0].with_suffix(".json").exists() and not list((tmp_path / "codes").glob(".tmp-*"))


def ds_frames(root, clip):
    from kinema.data.reader import EpisodeStore

    a = EpisodeStore(root / "physics").read(clip["episode"], masks=False, audio=False)
    return a[f"frames/{clip['camera']}"][clip["start"] : clip["start"] + 33]


def test_bad_inputs_are_named(data, tmp_path):
    root, vt = data
    with pytest.raises(ValueError, match="no dataset of the families"):
        build_codes(root / "camera", tmp_path / "c", vt, progress=False)
    cv = video.VideoTokenizer(video.get_preset("cv4x8x8-tiny"))
    with pytest.raises(ValueError, match="discrete"):
        build_codes(root, tmp_path / "c", cv, progress=False)
