"""TrainConfig: every knob of the training loop, in one JSON-safe dataclass.

Why a dataclass: it is saved as `train_config.json` in every checkpoint, so a
run always says how it was trained, and a resumed run can check that it goes
on with the same recipe. `from_dict` refuses keys it does not know, so a typo
in a config file fails loudly instead of silently training with a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

DTYPES = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
SHARDINGS = ("ddp", "fsdp")

# Keys that decide the optimisation trajectory. A run resumed from a checkpoint
# must agree with the saved run on these; the others (how long to train, how
# often to log or save, how many micro-batches, which device, which precision,
# DDP or FSDP) may change between sessions. `sharding` is not one of them: FSDP
# computes the same gradients as DDP and checkpoints hold full tensors either
# way, so a run may move between FSDP, DDP and one process.
RESUME_KEYS = (
    "batch_size",
    "lr",
    "warmup",
    "min_lr_ratio",
    "weight_decay",
    "betas",
    "grad_clip",
    "ema_decay",
    "seed",
)


@dataclass
class TrainConfig:
    out: str = "outputs/run"  # run directory
    steps: int = 1000  # optimizer steps
    batch_size: int = 8  # GLOBAL batch per optimizer step (across ranks and accumulation)
    grad_accum: int = 1  # micro-batches per step per rank
    lr: float = 3e-4
    warmup: int = 100  # linear warmup steps, then cosine to lr * min_lr_ratio
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01  # AdamW; no decay on 1-D params (norms, biases)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.999  # 0 disables EMA
    dtype: str = "fp32"  # "fp32" | "bf16" (autocast on CPU or CUDA; weights stay fp32)
    device: str = "auto"  # auto | cpu | cuda (auto picks cuda when available)
    seed: int = 0
    ckpt_every: int = 200  # steps between checkpoints (one is always written at the end)
    log_every: int = 10
    keep: int = 2  # how many step checkpoints to keep
    num_workers: int = 0  # DataLoader workers
    sharding: str = "ddp"  # "ddp" | "fsdp" (FSDP2: weights, grads and AdamW state sharded over ranks)

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        problems = []

        def need(ok: bool, name: str, expected: str):
            if not ok:
                problems.append(f"{name}={getattr(self, name)!r} (expected {expected})")

        need(self.steps >= 0, "steps", ">= 0")
        need(self.batch_size >= 1, "batch_size", ">= 1")
        need(self.grad_accum >= 1, "grad_accum", ">= 1")
        need(self.lr > 0, "lr", "> 0")
        need(self.warmup >= 0, "warmup", ">= 0")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two values in [0, 1)")
        need(self.grad_clip >= 0, "grad_clip", ">= 0, 0 disables")
        need(0 <= self.ema_decay < 1, "ema_decay", "in [0, 1), 0 disables")
        need(self.dtype in DTYPES, "dtype", f"one of {DTYPES}")
        need(self.device in DEVICES, "device", f"one of {DEVICES}")
        need(self.ckpt_every >= 0, "ckpt_every", ">= 0, 0 saves only at the end")
        need(self.log_every >= 1, "log_every", ">= 1")
        need(self.keep >= 1, "keep", ">= 1")
        need(self.num_workers >= 0, "num_workers", ">= 0")
        need(self.sharding in SHARDINGS, "sharding", f"one of {SHARDINGS}")
        if problems:
            raise ValueError("TrainConfig: invalid " + "; ".join(problems))

    def to_dict(self) -> dict:
        """A JSON-safe dict (tuples become lists)."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The inverse of `to_dict`; unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


# What each trainer flag means, for every command that trains with this loop (add_train_flags).
FLAG_HELP = {
    "out": "run directory: checkpoints, configs, log (a rerun resumes from its latest checkpoint)",
    "steps": "optimizer steps",
    "batch_size": "global batch per optimizer step (across ranks and accumulation)",
    "grad_accum": "micro-batches per step per rank",
    "lr": "peak learning rate (AdamW; linear warmup, then cosine)",
    "warmup": "linear warmup steps",
    "ema_decay": "decay of the EMA weights that ship (0: off)",
    "dtype": "autocast precision (weights stay fp32)",
    "device": "auto picks cuda when there is one",
    "seed": "seed of initial weights, data order and noise",
    "ckpt_every": "steps between checkpoints (one is always written at the end)",
    "log_every": "steps between log lines",
    "num_workers": "DataLoader worker processes",
}


def add_train_flags(parser, names, *, unset: bool = False, **defaults) -> None:
    """The loop's flags on one training command: --NAME for each TrainConfig field in `names` (dest NAME), its
    default from `defaults` where given, else TrainConfig's; unset: every default None (a flag not given leaves
    the command's own config as it is)."""
    base = TrainConfig()
    choices = {"dtype": DTYPES, "device": DEVICES}
    for name in names:
        default = None if unset else defaults.get(name, getattr(base, name))
        shown = getattr(base, name) if default is None else default
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=type(getattr(base, name)), default=default,
                            choices=choices.get(name), help=f"{FLAG_HELP[name]} (default: {shown})")
