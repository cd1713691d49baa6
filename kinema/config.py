"""The one base of model configs: dataclasses that round-trip through the JSON saved beside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict


class Config:
    """Mixin for a @dataclass config: `to_dict()` for config.json, `from_dict()` that names unknown keys."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)
