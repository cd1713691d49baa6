"""The one training loop every kinema model uses.

Why one loop: the tokenizers and the world model differ in their loss, not in
how they are trained. A model brings `loss_fn(model, batch) -> (loss, metrics)`;
the Trainer brings everything else, written and tested once:

  data order   a pure function of (seed, step): resuming needs no loader state
  precision    fp32, or bf16 autocast; weights and AdamW state stay fp32
  optimizer    AdamW (no weight decay on 1-D params), warmup + cosine LR, grad clipping
  EMA          an fp32 moving average of the weights; it is what ships
  checkpoints  atomic folders of safetensors + JSON, resumed from automatically
  scale        torchrun + DDP, or FSDP2 (sharding="fsdp": weights, grads and AdamW state sharded,
               one unit per block of every `layers` ModuleList): R ranks × A micro-batches make
               the gradient of one global batch; checkpoints hold full tensors either way
  records      OUT/log.jsonl, OUT/loss.png, a tqdm bar (rank 0)

Legend: B global batch (config.batch_size), R ranks (world size),
A micro-batches per step per rank (config.grad_accum), b = B / (R·A) the
micro-batch one rank feeds to one forward pass.

Run folder (OUT = config.out):

  OUT/log.jsonl                    one JSON line per log_every steps (and per eval)
  OUT/loss.png                     the loss curve, redrawn at every checkpoint
  OUT/checkpoints/step-00000200/   see kinema.train.checkpoint; the last `keep` are kept
  OUT/final/                       config.json + model.safetensors (EMA weights when EMA is on)

Many processes: `torchrun --nproc_per_node R script.py`, where the script
seeds, builds the model and calls Trainer(...).fit() exactly as a single
process does; the Trainer reads the torchrun environment itself. With
sharding="fsdp" and one process the Trainer trains unsharded (it says so), so
the same command runs on a laptop.
"""

from __future__ import annotations

import dataclasses

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from kinema.config import Config
from kinema.train.checkpoint import (
    CheckpointError,
    check_state_fits,
    clean_stale,
    config_differences,
    latest_checkpoint,
    load_state_strict,
    load_train_checkpoint,
    prune_checkpoints,
    save_pretrained,
    save_train_checkpoint,
    step_dir_name,
)
from kinema.train.config import RESUME_KEYS, TrainConfig
from kinema.train.distributed import (
    all_gather_tensor,
    all_reduce_mean,
    barrier,
    broadcast_from_rank0_,
    init_distributed,
    union_over_ranks,
)
from kinema.train.plot import plot_loss, read_log

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, float]]]
# Full (unsharded) state dicts on rank 0's CPU, empty elsewhere: what DCP gathers FSDP shards into.
FULL_ON_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


# ------------------------------------------------------------------ learning rate


def learning_rate(step: int, config: TrainConfig) -> float:
    """The LR of the update that takes the model from `step` to `step + 1` (0-based).

    Linear warmup over `warmup` updates (the first one already at lr/warmup, not
    0), then a half cosine from lr down to lr * min_lr_ratio at `steps`.
    """
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


# ------------------------------------------------------------------ data order


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the n dataset items in `epoch`: [n] int64."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))


def global_batch_indices(seed: int, step: int, n: int, batch_size: int) -> list[int]:
    """The dataset indices [B] of optimizer step `step`: a pure function, so resuming needs no state.

    Each epoch is a fresh permutation cut into consecutive batches; the ragged
    tail (n mod B items) is dropped.
    """
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"the dataset has {n} items, fewer than one global batch of {batch_size}")
    epoch, k = divmod(step, per_epoch)
    return epoch_permutation(seed, epoch, n)[k * batch_size : (k + 1) * batch_size].tolist()


class StepBatchSampler(Sampler[list[int]]):
    """This rank's micro-batches for steps [start, stop): A index lists of b items per step.

    Rank r takes the r-th contiguous share (B/R items) of each global batch and
    cuts it into A consecutive micro-batches. Used as a DataLoader batch_sampler,
    so workers load whole micro-batches.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, rank: int, world_size: int, grad_accum: int, start: int, stop: int
    ):
        if batch_size % (world_size * grad_accum):
            raise ValueError(
                f"batch_size={batch_size} must be divisible by world_size × grad_accum = {world_size} × {grad_accum}"
            )
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.start, self.stop = start, stop
        global_batch_indices(seed, start, n, batch_size)  # fail early on a dataset smaller than a batch

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        per_epoch = self.n // self.batch_size
        share = self.batch_size // self.world_size
        micro = share // self.grad_accum
        perm_epoch, perm = None, None
        for step in range(self.start, self.stop):
            epoch, k = divmod(step, per_epoch)
            if epoch != perm_epoch:  # same as global_batch_indices, one permutation per epoch
                perm_epoch, perm = epoch, epoch_permutation(self.seed, epoch, self.n)
            batch = perm[k * self.batch_size : (k + 1) * self.batch_size]
            mine = batch[self.rank * share : (self.rank + 1) * share]
            for a in range(self.grad_accum):
                yield mine[a * micro : (a + 1) * micro].tolist()


def to_device(batch, device: torch.device):
    """Move every tensor in a (nested dict / list / tuple / dataclass) batch to `device`."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: to_device(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch) if f.init})
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


# ------------------------------------------------------------------ optimizer and EMA


def build_optimizer(model: nn.Module, config: TrainConfig) -> tuple[torch.optim.AdamW, list[str]]:
    """AdamW with weight decay on matrices and kernels only, not on 1-D params (norms, biases).

    Returns the optimizer and the parameter names in optimizer order (index i
    of the optimizer state is names[i]), which checkpoints record.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append((name, p))
    groups = [
        {"params": [p for _, p in decay], "weight_decay": config.weight_decay},
        {"params": [p for _, p in no_decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas)
    return optimizer, [n for n, _ in decay] + [n for n, _ in no_decay]


class EMA:
    """An fp32 exponential moving average of a model's parameters; buffers are copied.

    After optimizer update number t (1, 2, ...), with d = min(decay, (1 + t) / (10 + t)):

        ema ← d · ema + (1 − d) · param

    The warm-up of d keeps a short run's average from being dominated by the
    random initialisation; it reaches 0.999 near t = 9000. Tied parameters
    (one tensor under two names) are averaged once. On an FSDP-sharded model
    the average is of this rank's shards (DTensors): local, no communication.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        canonical: dict[int, str] = {}
        self.alias: dict[str, str] = {}  # state-dict name -> the name its parameter is averaged under
        for name, p in model.named_parameters(remove_duplicate=False):
            self.alias[name] = canonical.setdefault(id(p), name)
        self.shadow: dict[str, torch.Tensor] = {}
        for name, t in model.state_dict().items():
            if self.alias.get(name, name) != name:
                continue
            t = t.detach()
            self.shadow[name] = t.float().clone() if name in self.alias and t.is_floating_point() else t.clone()

    @torch.no_grad()
    def update(self, model: nn.Module, t: int) -> None:
        d = min(self.decay, (1 + t) / (10 + t))
        for name, value in model.state_dict().items():
            if name in self.alias:
                if self.alias[name] == name:
                    self.shadow[name].lerp_(value.float(), 1.0 - d)
            else:
                self.shadow[name].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights under every name of the model's state dict."""
        names = list(self.alias) + [n for n in self.shadow if n not in self.alias]
        return {name: self.shadow[self.alias.get(name, name)] for name in names}

    def load_state_dict(self, state: dict[str, torch.Tensor], where: str) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise CheckpointError(f"{where}: EMA weights are missing {missing[:5]}")
        for name, t in self.shadow.items():
            value = state[name]
            if isinstance(t, DTensor):  # FSDP: this rank's shard of the full tensor every rank has loaded
                value = distribute_tensor(value.to(t.device), t.device_mesh, t.placements, src_data_rank=None)
            t.copy_(value)

    @contextmanager
    def applied_to(self, model: nn.Module):
        """Temporarily load the EMA weights into `model` (e.g. to evaluate them), then restore its own."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state_dict())
        try:
            yield model
        finally:
            model.load_state_dict(own)


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself, inside a DistributedDataParallel wrapper or not (FSDP2 shards the model in place)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def layer_units(model: nn.Module) -> list[nn.Module]:
    """The default FSDP units: every block of every nn.ModuleList named `layers` (e.g. the MoT backbone's)."""
    return [
        block
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and name.rsplit(".", 1)[-1] == "layers"
        for block in m
    ]


def shard_model(model: nn.Module, units: list[nn.Module], find_unused_parameters: bool) -> None:
    """FSDP2, in place: a unit's weights are gathered only around its own forward and backward; the rest are the root's.

    Precision: no MixedPrecisionPolicy. Weights are gathered in fp32 and the
    Trainer's bf16 autocast casts them per op, exactly as in one process or
    under DDP (the equivalence the tests check); a bf16 param_dtype would halve
    the all-gather traffic but round every parameter, norms included, to bf16.
    """
    from torch.distributed.fsdp import fully_shard

    # fully_shard keeps each rank's own slice and broadcasts nothing: start from rank 0's weights, as DDP does.
    with torch.no_grad():
        broadcast_from_rank0_(model.state_dict().values())
    for unit in reversed(units):  # innermost first: a unit inside another must be sharded before it
        fully_shard(unit)
    fully_shard(model)
    if find_unused_parameters:
        # A parameter this rank's forward passes did not use still joins the reduce-scatter (as a zero
        # gradient), so ranks that routed differently issue the same collectives. Unlike DDP, a parameter
        # that no rank used in a step gets a zero gradient rather than none, so AdamW still moves it (by
        # its momentum and weight decay) and counts the step.
        model.set_reduce_scatter_unused_params(True)


def renamed_params(optimizer_state: dict, rename: dict) -> dict:
    """An optimizer state dict with its parameter keys mapped through `rename`.

    torch.optim numbers parameters (0, 1, ... in optimizer order) where DCP's
    FSDP state dicts name them; converting keeps the checkpoint format
    (state.<index>.exp_avg) the same with or without FSDP.
    """
    return {
        "state": {rename[k]: s for k, s in optimizer_state["state"].items()},
        "param_groups": [{**g, "params": [rename[k] for k in g["params"]]} for g in optimizer_state["param_groups"]],
    }


# ------------------------------------------------------------------ the trainer


class Trainer:
    """Train `model` on `dataset` with `loss_fn` to config.steps; see the module docstring.

    loss_fn(model, batch) -> (loss, metrics): `batch` is one micro-batch [b, ...]
    already on the device, `loss` a scalar tensor, the mean over the
    micro-batch, and `metrics` a dict of floats to log; a key missing from a
    micro-batch (say a modality it lacks) counts as 0 in the means, on any
    rank. Under DDP `model` is the DistributedDataParallel wrapper: call it
    (model(...)) so gradients synchronise; `unwrap(model)` reaches the module.
    Under FSDP it is the model itself, sharded: call it too, so that the
    weights are gathered.

    eval_fn(model) -> metrics runs on rank 0 every `eval_every` steps and at
    the end, on the EMA weights when EMA is on, under no_grad, eval mode and the
    training autocast, with the RNG seeded from config.seed and then restored
    (so evaluating never changes training). Under FSDP every rank runs it (its
    forward passes gather the shards together) and rank 0 logs it.

    Build the model after torch.manual_seed(config.seed), in fp32; under DDP
    rank 0's initial weights are broadcast to every rank anyway. Set
    find_unused_parameters when some parameters get no gradient in a step
    (e.g. an expert that a batch does not route through).

    fsdp_units(model) -> the modules that FSDP shards as units of their own
    (default `layer_units`); used with config.sharding="fsdp" and R > 1 only.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        dataset: Dataset,
        config: TrainConfig,
        model_config: dict | Config,
        *,
        kind: str,
        collate_fn=None,
        eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
        eval_every: int = 0,
        find_unused_parameters: bool = False,
        fsdp_units: Callable[[nn.Module], Iterable[nn.Module]] = layer_units,
        extra_files: dict[str, Path] | None = None,
    ):
        # Given as its dataclass, a run saved before a field was added resumes with that field's default,
        # as its checkpoint loads (the convention: a new field's default is the behaviour before it).
        self.model_config_cls = type(model_config) if isinstance(model_config, Config) else None
        try:
            self.model_config = json.loads(json.dumps(model_config.to_dict() if self.model_config_cls else model_config))
        except TypeError as e:
            raise ValueError(f"model_config must be JSON-safe (it is saved in config.json): {e}") from None
        not_fp32 = [n for n, p in model.named_parameters() if p.is_floating_point() and p.dtype != torch.float32]
        if not_fp32:
            raise ValueError(
                f"the Trainer keeps weights in fp32 (bf16 is autocast): parameters {not_fp32[:5]} are not fp32"
            )
        self.config, self.kind = config, kind
        self.extra_files = dict(extra_files or {})  # name -> file, in every checkpoint folder and final/
        self.loss_fn, self.dataset, self.collate_fn = loss_fn, dataset, collate_fn
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.out = Path(config.out)
        self.ckpt_root = self.out / "checkpoints"
        self.log_path = self.out / "log.jsonl"

        self.rank, self.world_size, self.local_rank, self.device = init_distributed(config.device)
        if config.batch_size % (self.world_size * config.grad_accum):
            raise ValueError(
                f"batch_size={config.batch_size} (global) must be divisible by "
                f"world_size × grad_accum = {self.world_size} × {config.grad_accum}"
            )
        global_batch_indices(config.seed, 0, len(dataset), config.batch_size)  # fails on a dataset smaller than B

        self.model = model.to(self.device)
        self.fsdp = config.sharding == "fsdp" and self.world_size > 1
        if config.sharding == "fsdp" and not self.fsdp:
            self._say("sharding=fsdp with one process: training unsharded")
        if self.fsdp:  # before the optimizer and the EMA, which must hold the shards
            units = list(fsdp_units(self.model))
            shard_model(self.model, units, find_unused_parameters)
            self._say(f"FSDP: {len(units)} units and the root, sharded over {self.world_size} ranks")
        self.optimizer, self.param_names = build_optimizer(self.model, config)
        # Under DDP every rank holds the same weights, so only rank 0, which saves them, averages them;
        # under FSDP every rank averages its own shards, gathered only when saved.
        keep_ema = config.ema_decay > 0 and (self.rank == 0 or self.fsdp)
        self.ema = EMA(self.model, config.ema_decay) if keep_ema else None
        if self.world_size > 1 and not self.fsdp:
            self.wrapped: nn.Module = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters,
            )
        else:
            self.wrapped = self.model

    # -------------------------------------------------------------- public

    def fit(self) -> Path:
        """Train to config.steps, resuming from the newest checkpoint in OUT; return OUT/final."""
        if self.rank == 0:
            self.ckpt_root.mkdir(parents=True, exist_ok=True)
            clean_stale(self.ckpt_root)
            clean_stale(self.out)
        barrier()
        start = self._resume()
        if self.rank == 0:
            self._truncate_log(start)
        if start < self.config.steps:
            self._train(start)
        final = self.out / "final"
        weights = self._ema_state() if self.ema is not None else self._model_state()  # FSDP: a collective
        if self.rank == 0:
            save_pretrained(final, weights, self._config_json(), extra_files=self.extra_files)
            self._say(f"final weights ({'EMA' if self.ema is not None else 'raw'}) in {final}")
        barrier()
        return final

    # -------------------------------------------------------------- training

    def _train(self, start: int) -> None:
        cfg = self.config
        sampler = StepBatchSampler(
            len(self.dataset), cfg.batch_size, cfg.seed, self.rank, self.world_size, cfg.grad_accum, start, cfg.steps
        )
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",
            # The loader's own generator seeds its workers, so making an iterator
            # leaves the global RNG (and with it the training noise) untouched.
            generator=torch.Generator().manual_seed(cfg.seed + start),
        )
        batches = iter(loader)
        self.wrapped.train()
        window = _Window(self.device)
        try:
            bar = tqdm(total=cfg.steps, initial=start, disable=self.rank != 0, desc=self.kind, dynamic_ncols=True)
            with bar:  # closed on any exit, a crash included
                for step in range(start, cfg.steps):
                    lr = learning_rate(step, cfg)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    loss, metrics, grad_norm = self._step(batches)
                    done = step + 1
                    if self.ema is not None:
                        self.ema.update(self.model, done)
                    window.add(loss, metrics, grad_norm)

                    self._record(done, lr, window, bar)
                    bar.update(1)
                    if (cfg.ckpt_every and done % cfg.ckpt_every == 0) or done == cfg.steps:
                        self._save_checkpoint(done)
        finally:  # the loader's worker processes end here, not whenever the garbage collector gets to them
            del batches

    def _step(self, batches) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """One optimizer update over A micro-batches: (mean loss, mean metrics, grad norm before clipping)."""
        cfg = self.config
        loss_sum = torch.zeros((), device=self.device)
        metric_sums: dict[str, float] = {}
        for a in range(cfg.grad_accum):
            batch = to_device(next(batches), self.device)
            # DDP all-reduces gradients in the backward pass of the last micro-batch only. FSDP reduce-scatters
            # every micro-batch into the sharded gradients: skipping that would keep a full gradient per rank.
            last = a == cfg.grad_accum - 1
            ddp = isinstance(self.wrapped, DistributedDataParallel)
            sync = self.wrapped.no_sync() if ddp and not last else nullcontext()
            with sync:
                with self._autocast():
                    loss, metrics = self.loss_fn(self.wrapped, batch)
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.detach().float()
            for k, v in metrics.items():
                metric_sums[k] = metric_sums.get(k, 0.0) + float(v)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf  # inf: measure the norm, clip nothing
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if isinstance(grad_norm, DTensor):  # FSDP: the norm over all shards, replicated on every rank
            grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = {k: v / cfg.grad_accum for k, v in metric_sums.items()}
        return loss_sum / cfg.grad_accum, metrics, grad_norm

    def _record(self, done: int, lr: float, window: _Window, bar: tqdm) -> None:
        """After update `done`: a log line when one is due (train stats, eval metrics or both)."""
        cfg = self.config
        record = {}
        if done % cfg.log_every == 0 or done == cfg.steps:
            record.update(window.summary(lr, cfg.batch_size))  # a collective: every rank takes part
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(
                    f"the loss is {record['loss']} at step {done}; the last good checkpoint stays in {self.ckpt_root}"
                )
            bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{lr:.2e}")
        due = self.eval_fn is not None and ((self.eval_every and done % self.eval_every == 0) or done == cfg.steps)
        if due and (self.rank == 0 or self.fsdp):  # under FSDP every rank takes part in the forward passes
            record.update(self._evaluate())
        if self.rank != 0:
            return
        if record:
            with open(self.log_path, "a") as f:
                f.write(json.dumps({"step": done, **record}) + "\n")

    def _autocast(self):
        if self.config.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _evaluate(self) -> dict[str, float]:
        model = self.model
        devices = [self.device.index] if self.device.type == "cuda" else []
        averaged = self.ema.applied_to(model) if self.ema is not None else nullcontext()
        with torch.random.fork_rng(devices=devices), averaged, torch.no_grad(), self._autocast():
            torch.manual_seed(self.config.seed)
            model.eval()
            try:
                metrics = self.eval_fn(model)
            finally:
                model.train()
        return {f"eval/{k}": float(v) for k, v in metrics.items()}

    # -------------------------------------------------------------- checkpoints

    def _config_json(self) -> dict:
        return {"kind": self.kind, "model": self.model_config}

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """Every rank's RNG state, gathered to all ranks: cpu.<rank> (and cuda.<rank>) uint8 tensors."""
        states = {f"cpu.{r}": s for r, s in enumerate(all_gather_tensor(torch.get_rng_state()))}
        if self.device.type == "cuda":
            cuda = all_gather_tensor(torch.cuda.get_rng_state(self.device))
            states.update({f"cuda.{r}": s for r, s in enumerate(cuda)})
        return states

    def _model_state(self) -> dict[str, torch.Tensor]:
        """The full model state dict (on rank 0; under FSDP a collective that gathers the shards)."""
        return get_model_state_dict(self.model, options=FULL_ON_RANK0) if self.fsdp else self.model.state_dict()

    def _ema_state(self) -> dict[str, torch.Tensor] | None:
        """The full EMA state dict (on rank 0; under FSDP a collective that gathers each rank's shards)."""
        if self.ema is None:
            return None
        if not self.fsdp:
            return self.ema.state_dict()
        full = {}
        for name, t in self.ema.state_dict().items():
            t = t.full_tensor() if isinstance(t, DTensor) else t  # one tensor at a time: only that much extra memory
            if self.rank == 0:
                full[name] = t.cpu()
        return full

    def _optimizer_state(self) -> dict:
        """optimizer.state_dict() as one process has it (on rank 0; under FSDP a collective)."""
        if not self.fsdp:
            return self.optimizer.state_dict()
        state = get_optimizer_state_dict(self.model, self.optimizer, options=FULL_ON_RANK0)
        return renamed_params(state, {name: i for i, name in enumerate(self.param_names)}) if self.rank == 0 else {}

    def _save_checkpoint(self, step: int) -> None:
        rng = self._rng_states()  # a collective: every rank takes part
        # Collectives too under FSDP; rank 0 ends up with full tensors, written as by one process.
        model_state, ema_state, optimizer_state = self._model_state(), self._ema_state(), self._optimizer_state()
        barrier()
        if self.rank == 0:
            path = save_train_checkpoint(
                self.ckpt_root / step_dir_name(step),
                config=self._config_json(),
                train_config=self.config.to_dict(),
                model_state=model_state,
                ema_state=ema_state,
                optimizer_state=optimizer_state,
                param_names=self.param_names,
                rng=rng,
                extra_files=self.extra_files,
                trainer_state={
                    "step": step,
                    "world_size": self.world_size,
                    "samples_seen": step * self.config.batch_size,
                    "torch_version": torch.__version__,
                },
            )
            prune_checkpoints(self.ckpt_root, self.config.keep)
            plot_loss(self.log_path, self.out / "loss.png", title=f"{self.kind}: {self.out}")
            self._say(f"checkpoint {path}")
        barrier()

    def _resume(self) -> int:
        """Load the newest checkpoint in OUT (if any) and return its step; seed a fresh run otherwise."""
        path = latest_checkpoint(self.ckpt_root)
        if path is None:
            # Distinct streams per rank, so ranks draw different noise for different samples.
            torch.manual_seed(self.config.seed + self.rank)
            return 0
        ckpt = load_train_checkpoint(path)
        saved = {"kind": ckpt.config.get("kind"), "model": ckpt.config.get("model")}
        if self.model_config_cls is not None and isinstance(saved["model"], dict):
            try:
                saved["model"] = json.loads(json.dumps(self.model_config_cls.from_dict(saved["model"]).to_dict()))
            except (TypeError, ValueError):
                pass  # an unknown or invalid key: named key by key below
        given_train = self.config.to_dict()
        diffs = config_differences(saved, self._config_json())
        diffs += config_differences(
            {k: ckpt.train_config.get(k) for k in RESUME_KEYS}, {k: given_train[k] for k in RESUME_KEYS}, "train"
        )
        if diffs:
            raise ValueError(
                f"cannot resume the run in {self.out}: its checkpoint {path.name} was made with a different "
                f"configuration: {'; '.join(diffs)}. Use another output folder, or the saved configuration."
            )
        if ckpt.param_names != self.param_names:
            raise CheckpointError(f"{path / 'optimizer.json'}: the optimizer's parameters differ from this model's")

        if self.fsdp:  # every rank read the full tensors; DCP keeps each rank's shards
            check_state_fits(self.model, ckpt.model_state, where=str(path / "model.safetensors"))
            set_model_state_dict(self.model, ckpt.model_state, options=StateDictOptions(full_state_dict=True))
        else:
            load_state_strict(self.model, ckpt.model_state, where=str(path / "model.safetensors"))
        if self.ema is not None:
            if ckpt.ema_state is None:
                raise CheckpointError(f"{path}: no ema.safetensors, but ema_decay={self.config.ema_decay}")
            self.ema.load_state_dict(ckpt.ema_state, where=str(path / "ema.safetensors"))
        if self.fsdp:
            # strict=False: a parameter that never had a gradient has no AdamW state to load. DCP leaves it the
            # state of its own initialising step; drop that, so it starts fresh at its first gradient, as saved.
            named = renamed_params(ckpt.optimizer_state, dict(enumerate(self.param_names)))
            options = StateDictOptions(full_state_dict=True, strict=False)
            set_optimizer_state_dict(self.model, self.optimizer, named, options=options)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]  # optimizer order
            for i, p in enumerate(params):
                if i not in ckpt.optimizer_state["state"]:
                    self.optimizer.state.pop(p, None)
        else:
            self.optimizer.load_state_dict(ckpt.optimizer_state)

        key = f"cpu.{self.rank}"
        if ckpt.trainer_state.get("world_size") == self.world_size and key in ckpt.rng:
            torch.set_rng_state(ckpt.rng[key])
            if self.device.type == "cuda" and f"cuda.{self.rank}" in ckpt.rng:
                torch.cuda.set_rng_state(ckpt.rng[f"cuda.{self.rank}"], self.device)
        else:
            saved_world = ckpt.trainer_state.get("world_size")
            self._say(f"the world size changed ({saved_world} -> {self.world_size}): fresh RNG streams")
            torch.manual_seed(self.config.seed + self.rank + 1_000_003 * ckpt.step)
        saved_steps = ckpt.train_config.get("steps")
        if saved_steps != self.config.steps:
            self._say(f"steps changed ({saved_steps} -> {self.config.steps}): the cosine LR schedule stretches")
        self._say(f"resumed from {path} (step {ckpt.step})")
        return ckpt.step

    # -------------------------------------------------------------- records

    def _truncate_log(self, step: int) -> None:
        """Drop log lines after `step` (written after the checkpoint we resume from), and torn lines."""
        if not self.log_path.is_file():
            return
        kept = [r for r in read_log(self.log_path) if r.get("step", 0) <= step]
        tmp = self.log_path.with_name(".tmp-log.jsonl")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.log_path)

    def _say(self, message: str) -> None:
        if self.rank == 0:
            tqdm.write(f"[{self.kind}] {message}")


class _Window:
    """Sums over the steps since the last log line; tensors stay on the device until a log step."""

    def __init__(self, device: torch.device):
        self.device = device
        self._reset()

    def _reset(self) -> None:
        self.loss = torch.zeros((), device=self.device)
        self.grad_norm = torch.zeros((), device=self.device)
        self.metrics: dict[str, float] = {}
        self.steps = 0
        self.t0 = time.perf_counter()

    def add(self, loss: torch.Tensor, metrics: dict[str, float], grad_norm: torch.Tensor) -> None:
        self.loss += loss
        self.grad_norm += grad_norm.detach().float()
        for k, v in metrics.items():
            self.metrics[k] = self.metrics.get(k, 0.0) + v
        self.steps += 1

    def summary(self, lr: float, batch_size: int) -> dict[str, float]:
        """Means over the window and over ranks (a collective), then a fresh window."""
        keys = union_over_ranks(self.metrics)  # ranks may lack a key this window; all-reduce the same vector
        metrics = torch.tensor([self.metrics.get(k, 0.0) for k in keys], device=self.device)
        sums = torch.cat([self.loss.view(1), self.grad_norm.view(1), metrics])
        means = (all_reduce_mean(sums) / self.steps).tolist()
        seconds = (time.perf_counter() - self.t0) / self.steps
        record = {
            "loss": means[0],
            "lr": lr,
            "grad_norm": means[1],
            "sec_per_step": seconds,
            "samples_per_sec": batch_size / seconds,
            **dict(zip(keys, means[2:])),
        }
        self._reset()
        return record
