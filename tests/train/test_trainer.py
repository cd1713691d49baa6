import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import kinema.train

from kinema.config import Config
from kinema.train import EMA, Trainer, load_pretrained
from kinema.train.checkpoint import load_tensors
from kinema.train.trainer import StepBatchSampler, global_batch_indices
from tests.train.ddp_script import ToyMLP, ToyRegression, mse_loss, toy_config, train_toy


def noisy_loss(model, batch):
    """The toy loss on inputs with fresh noise: it draws from the global RNG, which resumes must restore."""
    return mse_loss(model, {"x": batch["x"] + 0.1 * torch.randn_like(batch["x"]), "y": batch["y"]})


class Killed(Exception):
    pass


def killed_at(calls: int):
    """noisy_loss that 'kills the process' on its `calls`-th call."""
    count = [0]

    def loss_fn(model, batch):
        count[0] += 1
        if count[0] == calls:
            raise Killed
        return noisy_loss(model, batch)

    return loss_fn


def weights(folder: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_tensors(folder / name)


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_data_order_is_a_pure_function_of_seed_and_step():
    n, b = 10, 4  # 2 batches per epoch, the ragged tail of 2 dropped
    first = [global_batch_indices(0, s, n, b) for s in range(2)]
    assert len(set(first[0] + first[1])) == 8
    assert global_batch_indices(0, 2, n, b) != first[0]  # a new epoch, a new permutation
    assert global_batch_indices(0, 1, n, b) == first[1]
    assert global_batch_indices(1, 0, n, b) != first[0]
    # Ranks take contiguous shares of the global batch, cut into micro-batches.
    shares = [list(StepBatchSampler(n, b, 0, r, 2, 2, 1, 3)) for r in range(2)]
    assert [len(s) for s in shares] == [4, 4] and all(len(m) == 1 for m in shares[0])
    for step, k in ((1, 0), (2, 2)):
        flat = sum(shares[0][k : k + 2] + shares[1][k : k + 2], [])
        assert flat == global_batch_indices(0, step, n, b)
    with pytest.raises(ValueError, match="divisible by world_size × grad_accum = 2 × 3"):
        StepBatchSampler(n, b, 0, 0, 2, 3, 0, 1)
    with pytest.raises(ValueError, match="3 items, fewer than one global batch of 4"):
        global_batch_indices(0, 0, 3, 4)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight = train_toy(tmp_path / "straight", loss_fn=noisy_loss)
    with pytest.raises(Killed):  # dies during step 5, after the checkpoint of step 3
        train_toy(tmp_path / "resumed", loss_fn=killed_at(5))
    assert (tmp_path / "resumed/checkpoints/step-00000003").is_dir()
    resumed = train_toy(tmp_path / "resumed", loss_fn=noisy_loss)

    for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors"):
        a = weights(tmp_path / "straight/checkpoints/step-00000006", name)
        b = weights(tmp_path / "resumed/checkpoints/step-00000006", name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The final export holds the EMA weights; the log has each step once, with the same losses.
    ema = weights(tmp_path / "resumed/checkpoints/step-00000006", "ema.safetensors")
    assert all(torch.equal(b[k], ema[k]) for k in b)
    logs = [log_records(tmp_path / d) for d in ("straight", "resumed")]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]
    assert {"loss", "lr", "grad_norm", "sec_per_step", "samples_per_sec", "mae"} <= logs[1][0].keys()
    # keep=2 step checkpoints; nothing is pickled: every file is safetensors, JSON or a PNG.
    out = tmp_path / "resumed"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
    for f in out.rglob("*"):
        if f.is_file():
            assert f.suffix in {".safetensors", ".json", ".jsonl", ".png"}, f
            if f.suffix == ".safetensors":
                header_len = int.from_bytes(f.read_bytes()[:8], "little")
                json.loads(f.read_bytes()[8 : 8 + header_len])
    # A finished run asked to fit again trains nothing and exports the same weights.
    again = train_toy(tmp_path / "resumed", loss_fn=noisy_loss)
    assert all(torch.equal(weights(again)[k], b[k]) for k in b)


_SLOW_RUN = """
import sys, time
import torch
from tests.train.ddp_script import train_toy
from tests.train.test_trainer import noisy_loss

def slow(model, batch):  # time for a kill to land anywhere: in a step, in a checkpoint's write, in the loss plot
    time.sleep(0.01)
    return noisy_loss(model, batch)

torch.set_num_threads(1)
train_toy(sys.argv[1], loss_fn=slow, steps=int(sys.argv[2]), ckpt_every=2, keep=3)
"""


def test_a_process_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    """A real kill -9 (no exception handler runs, a checkpoint may be half written), three times at different
    points, then the run finishes: the weights, EMA and log equal those of a run never killed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    steps, out = 40, tmp_path / "killed"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    for k, wait in enumerate((0.05, 0.21, 0.37)):  # after at least 4, 8, 12 more logged steps, plus a little
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(out), str(steps)], cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log, deadline = out / "log.jsonl", time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) >= 4 * (k + 1) + 2:
                break
            time.sleep(0.01)
        time.sleep(wait)
        assert proc.poll() is None, "the run finished before it could be killed: make it slower"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = train_toy(out, loss_fn=noisy_loss, steps=steps, ckpt_every=2, keep=3)
    straight = train_toy(tmp_path / "straight", loss_fn=noisy_loss, steps=steps, ckpt_every=2, keep=3)
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last = f"checkpoints/step-{steps:08d}"
    ea, eb = weights(tmp_path / "straight" / last, "ema.safetensors"), weights(out / last, "ema.safetensors")
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    logs = [log_records(d) for d in (tmp_path / "straight", out)]
    assert [r["step"] for r in logs[1]] == list(range(1, steps + 1))  # each step once, none lost or doubled
    assert [r["loss"] for r in logs[0]] == [r["loss"] for r in logs[1]]
    assert not [p.name for p in out.rglob("*") if p.name.startswith((".tmp-", ".old-"))]  # nothing half-written is left


def test_no_pickle_in_the_training_code():
    for source in Path(kinema.train.__file__).parent.glob("*.py"):
        text = source.read_text()
        for call in ("torch.save(", "torch.load(", "import pickle", "pickle.load"):
            assert call not in text, (source, call)


def test_resume_with_another_config_names_the_keys(tmp_path):
    train_toy(tmp_path, steps=3, ckpt_every=0)
    torch.manual_seed(0)
    config = toy_config(tmp_path, steps=6, lr=0.5)
    trainer = Trainer(ToyMLP(), mse_loss, ToyRegression(), config, {"in": 4, "hidden": 32}, kind="toy")
    with pytest.raises(ValueError, match=r"model\.hidden \(saved 16, now 32\); train\.lr \(saved 0\.01, now 0\.5\)"):
        trainer.fit()


@dataclasses.dataclass
class ToyConfig(Config):
    hidden: int = 32
    added_later: bool = True  # a field a newer version added, its default the behaviour before it


def test_a_run_saved_before_a_field_was_added_resumes_with_its_default(tmp_path):
    train_toy(tmp_path, steps=3, ckpt_every=0)  # saved {"in": 4, "hidden": 16}: no "added_later"
    for f in tmp_path.glob("**/config.json"):  # as an older version would have saved this toy's config
        f.write_text(json.dumps({"kind": "toy", "model": {"hidden": 16}}))

    def trainer(**model):
        torch.manual_seed(0)
        return Trainer(ToyMLP(), mse_loss, ToyRegression(), toy_config(tmp_path, steps=4), ToyConfig(**model),
                       kind="toy")

    with pytest.raises(ValueError, match=r"model\.added_later \(saved True, now False\)"):
        trainer(hidden=16, added_later=False).fit()
    with pytest.raises(ValueError, match=r"model\.hidden \(saved 16, now 32\)"):
        trainer().fit()
    trainer(hidden=16).fit()
    assert log_records(tmp_path)[-1]["step"] == 4


def test_grad_accum_gives_the_same_step(tmp_path):
    one = train_toy(tmp_path / "a", steps=3, ema_decay=0, grad_accum=1)
    two = train_toy(tmp_path / "b", steps=3, ema_decay=0, grad_accum=2)
    a, b = weights(one), weights(two)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_loader_workers_load_the_same_batches(tmp_path):
    plain = train_toy(tmp_path / "a", steps=3, ema_decay=0, ckpt_every=0)
    workers = train_toy(tmp_path / "b", steps=3, ema_decay=0, ckpt_every=0, num_workers=2)
    a, b = weights(plain), weights(workers)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ema_math():
    model = nn.Linear(1, 1, bias=False)
    model.register_buffer("count", torch.tensor(0))
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
    model.count += 5
    ema.update(model, t=1)  # d = min(0.9, 2 / 11)
    d = 2 / 11
    assert ema.state_dict()["weight"].item() == pytest.approx(d * 1.0 + (1 - d) * 2.0)
    assert ema.state_dict()["count"].item() == 5  # buffers are copied
    before = ema.state_dict()["weight"].item()
    ema.update(model, t=100)  # d = min(0.9, 101 / 110) = 0.9
    assert ema.state_dict()["weight"].item() == pytest.approx(0.9 * before + 0.1 * 2.0)
    with ema.applied_to(model):
        assert model.weight.item() == pytest.approx(ema.state_dict()["weight"].item())
    assert model.weight.item() == 2.0


def test_bf16_trains_and_keeps_fp32_weights(tmp_path):
    final = train_toy(tmp_path, dtype="bf16", steps=60, lr=3e-2, warmup=3, ema_decay=0, ckpt_every=0, log_every=1)
    losses = [r["loss"] for r in log_records(tmp_path)]
    assert sum(losses[-10:]) / 10 < 0.5 * losses[0]  # about 0.27 from 0.91
    config, state = load_pretrained(final, expected_kind="toy")
    assert config == {"kind": "toy", "model": {"in": 4, "hidden": 16}}
    assert all(t.dtype == torch.float32 for t in weights(final).values())
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_eval_runs_on_schedule_without_changing_training(tmp_path):
    def eval_fn(model):
        assert not model.training and not torch.is_grad_enabled()
        torch.randn(100)  # evaluation may draw random numbers; training must not notice
        data = ToyRegression()
        return {"loss": mse_loss(model, {"x": data.x, "y": data.y})[0].item()}

    plain = train_toy(tmp_path / "a", loss_fn=noisy_loss, steps=4)
    torch.manual_seed(0)
    config = toy_config(tmp_path / "b", steps=4)
    trainer = Trainer(ToyMLP(), noisy_loss, ToyRegression(), config, {}, kind="toy", eval_fn=eval_fn, eval_every=3)
    evaluated = trainer.fit()
    a, b = weights(plain), weights(evaluated)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in log_records(tmp_path / "b") if "eval/loss" in r] == [3, 4]


def test_bad_setups_fail_early(tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        Trainer(ToyMLP(), mse_loss, ToyRegression(), toy_config(tmp_path, grad_accum=3), {}, kind="toy")
    with pytest.raises(ValueError, match="fewer than one global batch"):
        Trainer(ToyMLP(), mse_loss, ToyRegression(5), toy_config(tmp_path), {}, kind="toy")
    with pytest.raises(ValueError, match="JSON-safe"):
        Trainer(ToyMLP(), mse_loss, ToyRegression(), toy_config(tmp_path), {"f": object()}, kind="toy")
    with pytest.raises(ValueError, match="not fp32"):
        Trainer(ToyMLP().bfloat16(), mse_loss, ToyRegression(), toy_config(tmp_path), {}, kind="toy")


def test_to_device_moves_every_tensor_of_a_batch_dataclasses_too():
    """The world model's batches are Tokens dataclasses: a trainer on a GPU must move their tensors too (the meta
    device stands in for one here)."""
    from kinema.model.sequence import Tokens
    from kinema.train.trainer import to_device

    names = [f.name for f in dataclasses.fields(Tokens)]
    tok = Tokens(**{n: torch.zeros(2, 3) for n in names})
    moved = to_device({"batch": [tok, (torch.ones(1), 3)]}, torch.device("meta"))
    assert isinstance(moved["batch"][0], Tokens) and all(getattr(moved["batch"][0], n).is_meta for n in names)
    assert moved["batch"][1][0].is_meta and moved["batch"][1][1] == 3
    assert not tok.kind.is_meta  # the original is left as it was
