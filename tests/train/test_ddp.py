"""Two gloo processes under torchrun train to the same weights as one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from kinema.train.checkpoint import load_tensors
from tests.train.ddp_script import DDP_RUN, train_toy

SCRIPT = Path(__file__).with_name("ddp_script.py")
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: Path, *args) -> subprocess.CompletedProcess:
    """SCRIPT under 2 gloo processes; fails the test unless they both exit cleanly. PYTHONFAULTHANDLER: a rank
    that aborts prints where it was, so a rare teardown failure in CI can be read."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1", PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(script), *map(str, args)]  # fmt: skip
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="this torch build has no gloo backend"
)
def test_two_ranks_match_one_process(tmp_path):
    torchrun(SCRIPT, tmp_path / "ddp")
    single = train_toy(tmp_path / "single", **DDP_RUN)
    for folder in ("final", "checkpoints/step-00000005"):
        a = load_tensors(tmp_path / "ddp" / folder / "model.safetensors")
        b = load_tensors(single.parent / folder / "model.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0, msg=f"{folder}: {k}")
    state = json.loads((tmp_path / "ddp/checkpoints/step-00000005/trainer_state.json").read_text())
    assert state["world_size"] == 2
    # The logged loss is the mean over ranks, i.e. over the global batch, as in one process.
    losses = [
        torch.tensor([json.loads(line)["loss"] for line in (tmp_path / d / "log.jsonl").read_text().splitlines()])
        for d in ("ddp", "single")
    ]
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=0)
