import json

import pytest

from kinema.train import TrainConfig, learning_rate
from kinema.train.config import RESUME_KEYS


def test_round_trip_through_json():
    config = TrainConfig(out="x", steps=7, betas=(0.8, 0.95), dtype="bf16", ema_decay=0, sharding="fsdp")
    d = json.loads(json.dumps(config.to_dict()))
    assert d["betas"] == [0.8, 0.95]
    assert TrainConfig.from_dict(d) == config


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown keys \['bach_size', 'lrr'\]"):
        TrainConfig.from_dict({"lrr": 1.0, "bach_size": 4, "steps": 3})


def test_bad_values_are_named():
    with pytest.raises(ValueError, match=r"dtype='fp16'.*keep=0"):
        TrainConfig(dtype="fp16", keep=0)
    with pytest.raises(ValueError, match=r"invalid sharding='zero3' \(expected one of \('ddp', 'fsdp'\)\)"):
        TrainConfig(sharding="zero3")


def test_sharding_may_change_when_resuming():
    # FSDP and DDP compute the same gradients and save the same full checkpoints: a run may move between them.
    assert "sharding" not in RESUME_KEYS
    assert TrainConfig().sharding == "ddp"  # what runs saved before the option existed trained with


def test_lr_schedule():
    c = TrainConfig(lr=1.0, warmup=4, steps=14, min_lr_ratio=0.1)
    lrs = [learning_rate(s, c) for s in range(c.steps)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]  # linear warmup, the first update already moves
    assert lrs[4] == 1.0  # cosine starts at the peak
    assert learning_rate(9, c) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert learning_rate(c.steps, c) == pytest.approx(0.1)  # the floor, lr * min_lr_ratio
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))  # then it only decreases
    assert learning_rate(0, TrainConfig(lr=2.0, warmup=0, steps=10)) == 2.0
