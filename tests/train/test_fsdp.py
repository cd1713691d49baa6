"""FSDP (FSDP2 fully_shard, 2 gloo processes) trains to the same weights as one process, and its checkpoints
resume in one process, and the other way round."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from kinema.train import learning_rate
from kinema.train.checkpoint import load_tensors, read_json
from kinema.train.trainer import StepBatchSampler, layer_units
from tests.train.ddp_script import ToyMLP, ToyRegression, toy_config
from tests.train.test_ddp import torchrun
from tests.train.fsdp_script import FSDP_RUN, ToyStack, routed, train_stack

SCRIPT = Path(__file__).with_name("fsdp_script.py")
FILES = ("model.safetensors", "ema.safetensors", "optimizer.safetensors")


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    """Step-5 checkpoints (weights, EMA, AdamW state), the final export and the log of two runs agree.

    atol 1e-5: the runs differ only in float summation order (per-rank gradient means reduce-scattered vs one
    mean over the batch), about 1e-7 relative in fp32; one lost or doubled micro-batch gradient moves the
    weights by ~1e-3 per step (lr 1e-2), so it would fail by far.
    """
    pairs = [(a / "checkpoints/step-00000005" / f, b / "checkpoints/step-00000005" / f) for f in FILES]
    for x, y in pairs + [(a / "final/model.safetensors", b / "final/model.safetensors")]:
        s, t = load_tensors(x), load_tensors(y)
        assert s.keys() == t.keys(), x
        for k in s:
            torch.testing.assert_close(s[k], t[k], atol=1e-5, rtol=0, msg=f"{x}: {k}")
    ckpt = "checkpoints/step-00000005/optimizer.json"
    assert read_json(a / ckpt) == read_json(b / ckpt)  # param groups and names in optimizer order
    logs = [log_records(a), log_records(b)]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == [1, 2, 3, 4, 5]
    for key in ("loss", "grad_norm", "eval/loss"):
        x, y = ([r[key] for r in log if key in r] for log in logs)
        torch.testing.assert_close(torch.tensor(x), torch.tensor(y), atol=1e-5, rtol=0, msg=key)
    assert all("mse/alt" in r for log in logs for r in log)  # logged by some rank at every step


def copy_to_step_3(src: Path, dst: Path) -> Path:
    """A copy of a finished run as it was after its step-3 checkpoint (the resume drops the later log lines)."""
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "checkpoints/step-00000005")
    shutil.rmtree(dst / "final")
    return dst


def test_default_units_are_the_blocks_of_layers():
    model = ToyStack()
    assert layer_units(model) == list(model.layers)
    assert layer_units(ToyMLP()) == []  # no `layers`: FSDP shards the model as one unit


def test_the_toy_run_routes_differently_on_each_rank():
    """In some step one rank routes no sample to the `alt` experts: their weights go unused there and its log
    window lacks "mse/alt" (both must not desynchronise the ranks). Every step routes some sample on some rank:
    a parameter no rank used would get FSDP's zero gradient, not one process's none, and the runs would differ."""
    x, steps = ToyRegression().x, FSDP_RUN["steps"]
    alt = routed(x)
    shares = [list(StepBatchSampler(len(x), 8, 0, r, 2, FSDP_RUN["grad_accum"], 0, steps)) for r in range(2)]
    routed_per_step = [[int(alt[share[2 * s] + share[2 * s + 1]].sum()) for s in range(steps)] for share in shares]
    assert 0 in routed_per_step[0] + routed_per_step[1]
    assert all(a + b > 0 for a, b in zip(*routed_per_step))


needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="this torch build has no gloo backend"
)


@needs_gloo
def test_fsdp_matches_one_process_and_resumes_across(tmp_path, capsys):
    single = train_stack(tmp_path / "single").parent  # sharding="fsdp" in one process: trains unsharded
    assert "sharding=fsdp with one process: training unsharded" in capsys.readouterr().out
    single_then_fsdp = copy_to_step_3(single, tmp_path / "single_then_fsdp")

    result = torchrun(SCRIPT, tmp_path / "fsdp", single_then_fsdp)
    assert "FSDP: 2 units and the root, sharded over 2 ranks" in result.stdout
    assert "resumed from" in result.stdout and "world size changed (1 -> 2)" in result.stdout

    fsdp = tmp_path / "fsdp"
    assert read_json(fsdp / "checkpoints/step-00000005/trainer_state.json")["world_size"] == 2
    assert_same_run(fsdp, single)  # (a) 2 FSDP ranks = one process
    assert_same_run(single_then_fsdp, single)  # (b) a one-process checkpoint resumed under FSDP
    fsdp_then_single = copy_to_step_3(fsdp, tmp_path / "fsdp_then_single")
    train_stack(fsdp_then_single, sharding="ddp")  # (b) an FSDP checkpoint resumed in one process, as "ddp"
    assert_same_run(fsdp_then_single, single)


@needs_gloo
def test_a_parameter_without_optimizer_state_resumes_under_fsdp(tmp_path):
    single = train_stack(tmp_path, spare=True).parent  # `spare` never gets a gradient: no AdamW state saved
    copy_to_step_3(single, tmp_path / "resumed")
    names = read_json(single / "checkpoints/step-00000003/optimizer.json")["param_names"]
    spare = f"state.{names.index('spare.weight')}."
    saved = load_tensors(single / "checkpoints/step-00000003/optimizer.safetensors")
    assert not any(k.startswith(spare) for k in saved)
    torchrun(SCRIPT, "--spare", tmp_path / "resumed")
    state = load_tensors(tmp_path / "resumed/checkpoints/step-00000005/optimizer.safetensors")
    # Under FSDP an unused parameter gets zero gradients: AdamW state from step 4 on, starting fresh there, and
    # (unlike in one process, where it has no gradient) weight decay, but no Adam move (its momentum stays 0).
    assert state[spare + "step"].item() == 2
    config = toy_config(tmp_path, **FSDP_RUN)
    decay = (1 - learning_rate(3, config) * config.weight_decay) * (1 - learning_rate(4, config) * config.weight_decay)
    at_3 = load_tensors(single / "checkpoints/step-00000003/model.safetensors")["spare.weight"]
    at_5 = load_tensors(tmp_path / "resumed/checkpoints/step-00000005/model.safetensors")["spare.weight"]
    torch.testing.assert_close(at_5, at_3 * decay)
