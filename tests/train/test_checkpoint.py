import json
import os

import pytest
import torch
from torch import nn

from kinema.train import CheckpointError, load_pretrained, load_state_strict, save_pretrained
from kinema.train.checkpoint import (
    clean_stale,
    flatten_optimizer_state,
    latest_checkpoint,
    mean_state,
    unflatten_optimizer_state,
)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight  # tied: one tensor under two names
        self.norm = nn.LayerNorm(3)


def test_round_trip_bf16_and_tied_weights(tmp_path):
    model = Tied()
    save_pretrained(tmp_path / "ck", model.state_dict(), {"kind": "toy", "model": {"d": 3}}, dtype=torch.bfloat16)
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no temporary left behind
    config, state = load_pretrained(tmp_path / "ck", expected_kind="toy")
    assert config == {"kind": "toy", "model": {"d": 3}}
    assert state["embed.weight"].dtype == torch.float32  # stored bf16, back as fp32
    torch.testing.assert_close(state["head.weight"], model.head.weight.detach().bfloat16().float())
    fresh = Tied()
    load_state_strict(fresh, state, "ck")
    assert fresh.head.weight is fresh.embed.weight


def test_overwrite_is_atomic_and_crash_keeps_old(tmp_path, monkeypatch):
    target = tmp_path / "final"
    save_pretrained(target, {"w": torch.zeros(2)}, {"kind": "toy"})
    real_replace = os.replace

    def crash(src, dst):  # the kill comes right before the new folder is renamed in
        if ".tmp-" in str(src):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(target, {"w": torch.ones(2)}, {"kind": "toy"})
    monkeypatch.undo()
    # The old folder was moved aside; recovery puts it back and removes the temporaries.
    (tmp_path / ".tmp-0123abcd-final").mkdir()  # as a hard kill would leave it
    clean_stale(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["final"]
    assert torch.equal(load_pretrained(target)[1]["w"], torch.zeros(2))
    save_pretrained(target, {"w": torch.ones(2)}, {"kind": "toy"})
    assert torch.equal(load_pretrained(target)[1]["w"], torch.ones(2))


def test_partial_and_hidden_checkpoints_are_ignored(tmp_path):
    (tmp_path / ".tmp-0123abcd-step-00000009").mkdir()
    (tmp_path / "step-00000005").mkdir()  # not complete: no files
    assert latest_checkpoint(tmp_path) is None


def test_load_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_pretrained(tmp_path / "nope")
    save_pretrained(tmp_path / "a", {"w": torch.zeros(1)}, {"kind": "audio_tokenizer", "model": {}})
    with pytest.raises(CheckpointError, match="is a 'audio_tokenizer', expected 'video_tokenizer'"):
        load_pretrained(tmp_path / "a", expected_kind="video_tokenizer")
    (tmp_path / "a" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="malformed JSON"):
        load_pretrained(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text("{}")
    os.remove(tmp_path / "a" / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors: missing file"):
        load_pretrained(tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_pretrained(tmp_path / "a")


def test_load_state_strict_lists_the_differences():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    state = model.state_dict()
    state.pop("1.bias")
    state["extra"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(4, 2)
    with pytest.raises(ValueError) as e:
        load_state_strict(model, state, "ck/model.safetensors")
    msg = str(e.value)
    assert msg.startswith("ck/model.safetensors:")
    assert "missing keys (1): 1.bias" in msg and "unexpected keys (1): extra" in msg
    assert "0.weight: checkpoint [4, 2] vs model [3, 2]" in msg


def test_optimizer_state_flattens_to_tensors_and_json():
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer_state(opt.state_dict(), ["weight", "bias"])
    assert set(tensors) == {f"state.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")}
    restored = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)))
    other = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.5)
    other.load_state_dict(restored)
    assert other.param_groups[0]["betas"] == (0.8, 0.9) and other.param_groups[0]["lr"] == 0.1
    for i, p in enumerate(other.param_groups[0]["params"]):
        ref = opt.state[opt.param_groups[0]["params"][i]]
        assert all(torch.equal(other.state[p][k], ref[k]) for k in ref)


def test_mean_state_averages_and_names_a_mismatch():
    a = {"w": torch.tensor([1.0, 3.0], dtype=torch.bfloat16), "step": torch.tensor([7])}
    b = {"w": torch.tensor([2.0, 5.0]), "step": torch.tensor([9])}
    m = mean_state([a, b], ["run-a", "run-b"])
    assert m["w"].dtype == torch.float32 and m["w"].tolist() == [1.5, 4.0]
    assert m["step"].tolist() == [7]  # integer tensors are not averaged: the first state's
    with pytest.raises(CheckpointError, match="run-c with run-a.*w"):
        mean_state([a, {"w": torch.zeros(3), "step": torch.tensor([1])}], ["run-a", "run-c"])
    with pytest.raises(CheckpointError, match="extra"):
        mean_state([a, b | {"extra": torch.zeros(1)}], ["run-a", "run-b"])
