"""Embodiments: who produces the actions, how many numbers an action has, and how to normalise them.

Every embodiment owns one slot of the model's domain-aware action layers (a
Linear per slot, inputs zero-padded to `max_action_dim`), so a new robot is a
new slot, not a new model. The registry lives in the model config and is saved
with every checkpoint, statistics included.

timing: "after" = row t acts after frame t is seen, so it shapes frame t + 1
(tabletop arms); "at" = row t describes frame t itself (a camera pose).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kinema.worlds.camera_motion import POSE_NAMES
from kinema.worlds.tabletop import ACTION_NAMES

TIMINGS = ("after", "at")
# Floor on an action dimension's std: a dimension that (almost) never varies in the training data is
# not scaled up into noise; the pipeline predicts such a dimension as its training mean.
STD_FLOOR = 1e-3


@dataclass
class Embodiment:
    name: str
    dim: int
    timing: str = "after"
    action_names: tuple[str, ...] = ()
    mean: list[float] = field(default_factory=list)  # per dimension; filled from the training data
    std: list[float] = field(default_factory=list)

    def __post_init__(self):
        self.action_names = tuple(self.action_names)
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"embodiment name: expected a non-empty string, got {self.name!r}")
        if int(self.dim) < 1:
            raise ValueError(f"embodiment {self.name!r}: dim must be >= 1, got {self.dim}")
        if self.timing not in TIMINGS:
            raise ValueError(f"embodiment {self.name!r}: timing must be one of {TIMINGS}, got {self.timing!r}")
        if self.action_names and len(self.action_names) != self.dim:
            raise ValueError(f"embodiment {self.name!r}: {len(self.action_names)} action names for dim {self.dim}")
        self.mean = list(self.mean) or [0.0] * self.dim
        self.std = list(self.std) or [1.0] * self.dim
        if len(self.mean) != self.dim or len(self.std) != self.dim:
            raise ValueError(f"embodiment {self.name!r}: mean/std must have {self.dim} entries")

    @property
    def fitted(self) -> bool:
        """Whether its statistics came from data (a registered embodiment starts at mean 0, std 1)."""
        return not (all(m == 0.0 for m in self.mean) and all(x == 1.0 for x in self.std))

    def constant_dims(self) -> list[bool]:
        """Dimensions whose training std sat at the floor: they carry no signal to predict."""
        return [s <= STD_FLOOR * (1 + 1e-6) for s in self.std]


# The built-in layouts (REFERENCE §4): slots 0 and 1 of every model.
BUILTIN = (
    Embodiment("single_arm", 10, "after", ACTION_NAMES),
    Embodiment("camera", 9, "at", POSE_NAMES),
)


def register_embodiment(embodiments: list[Embodiment], name: str, dim: int, *, timing: str = "after",
                        action_names=(), max_action_dim: int = 64, max_embodiments: int = 32) -> int:
    """Add a new embodiment to a model's registry (in place) and return its slot.

    Its action layers start untrained: fine-tune on its episodes (`kinema train --init CKPT`).
    """
    if any(e.name == name for e in embodiments):
        raise ValueError(f"embodiment {name!r} is already registered (slot {index(embodiments, name)})")
    if not 1 <= int(dim) <= max_action_dim:
        raise ValueError(f"embodiment {name!r}: dim must be in [1, {max_action_dim}] (the padded action width), got {dim}")
    if len(embodiments) >= max_embodiments:
        raise ValueError(f"all {max_embodiments} embodiment slots are taken: {[e.name for e in embodiments]}")
    embodiments.append(Embodiment(name, int(dim), timing, tuple(action_names)))
    return len(embodiments) - 1


def index(embodiments: list[Embodiment], name: str) -> int:
    for i, e in enumerate(embodiments):
        if e.name == name:
            return i
    raise ValueError(f"unknown embodiment (domain_name) {name!r}; registered: {[e.name for e in embodiments]}")


def find(embodiments: list[Embodiment], action_names=(), dim: int | None = None, timing: str | None = None) -> int:
    """The slot whose action names match (else the only one with this dim and timing)."""
    names = tuple(action_names)
    for i, e in enumerate(embodiments):
        if names and e.action_names == names:
            return i
    hits = [i for i, e in enumerate(embodiments) if e.dim == dim and (timing is None or e.timing == timing)]
    if len(hits) == 1:
        return hits[0]
    raise ValueError(f"no registered embodiment has actions {names or dim}-D ({timing}); registered: "
                     + ", ".join(f"{e.name} ({e.dim}-D, {e.timing})" for e in embodiments))
