"""One process or many: the torchrun environment, read in one place.

Why: the same training code runs as one plain process on a laptop and as N
processes under `torchrun --nproc_per_node N` (DDP or FSDP). torchrun tells each
process who it is through the RANK, WORLD_SIZE and LOCAL_RANK environment
variables (and MASTER_ADDR / MASTER_PORT for the rendezvous). Without them we
are a single process: no process group is created and every collective here
is a no-op, so callers never branch on "am I distributed".

Backends: gloo on CPU (also what the tests use, with 2 processes), nccl on CUDA
(one GPU per process, cuda:LOCAL_RANK).
"""

from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """auto | cpu | cuda -> a torch.device; cuda means this process's GPU, cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for, but torch sees no CUDA device (use 'auto' or 'cpu')")
        return torch.device("cuda", local_rank)
    raise ValueError(f"device={name!r}: expected 'auto', 'cpu' or 'cuda'")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_distributed(device: str = "auto") -> tuple[int, int, int, torch.device]:
    """(rank, world_size, local_rank, device) of this process; joins the process group under torchrun.

    Idempotent: a second call (a script that already initialised, then a
    Trainer) returns the same answer without re-initialising.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return 0, 1, 0, dev
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not is_distributed():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        if dev.type == "cuda":
            dist.init_process_group(backend="nccl", device_id=dev)
        else:
            dist.init_process_group(backend="gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank, dev


def cleanup_distributed() -> None:
    """Leave the process group (end of a torchrun script); a no-op for one process."""
    if is_distributed():
        # Free what still holds the group (FSDP's reference cycles) while the interpreter is whole: left to
        # interpreter shutdown, gloo's threads can abort the process after training has finished.
        gc.collect()
        dist.barrier()  # no rank tears down gloo while another still has a collective in flight
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _comm_device() -> torch.device:
    # nccl only moves CUDA tensors; gloo moves CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_tensor(t: torch.Tensor) -> list[torch.Tensor]:
    """The tensor `t` of every rank, in rank order, on the CPU (same shape and dtype on all ranks)."""
    if not is_distributed():
        return [t.detach().cpu()]
    dev = _comm_device()
    local = t.detach().to(dev)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return [g.cpu() for g in gathered]


def union_over_ranks(names) -> list[str]:
    """The sorted union of every rank's `names` (a collective); the names travel as UTF-8 bytes, not pickled."""
    names = sorted(set(names))
    if not is_distributed():
        return names
    data = torch.tensor(list("\n".join(names).encode()), dtype=torch.uint8)
    sizes = [int(n) for n in all_gather_tensor(torch.tensor([len(data)]))]
    padded = torch.zeros(max(1, *sizes), dtype=torch.uint8)  # all_gather wants one shape on every rank
    padded[: len(data)] = data
    union = set()
    for chunk, n in zip(all_gather_tensor(padded), sizes):
        union.update(k for k in bytes(chunk[:n].tolist()).decode().split("\n") if k)
    return sorted(union)


def broadcast_from_rank0_(tensors) -> None:
    """Overwrite each tensor in place with rank 0's (CUDA tensors under nccl); a no-op for one process."""
    if not is_distributed():
        return
    for t in tensors:
        dist.broadcast(t, src=0)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over ranks (a new tensor, on t's device)."""
    if not is_distributed():
        return t.detach().clone()
    out = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return (out / dist.get_world_size()).to(t.device)
