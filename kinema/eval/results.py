"""Where a benchmark's figures go: a resumable JSONL log, a summary JSON, a Markdown table.

Each benchmark run writes into `<out>/<benchmark>/<predictor>/`:

  run.json       the settings of the run; a rerun with other settings is refused
                 (except a larger N, which resumes and adds rollouts)
  results.jsonl  one line per finished unit of work (a rollout and camera, a
                 policy episode ...), flushed and fsynced as it is written;
                 a rerun skips every key already there, and ignores a last line
                 cut short by a crash
  summary.json   every aggregate figure with its convention
  table.md       the same as a Markdown table
  *.png          plots and contact sheets
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray):
        return _json_safe(v.tolist())
    return v


def write_json(path, obj) -> Path:
    """Atomically write `obj` as JSON (NaN and inf become null: strict JSON has neither)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


class ResultLog:
    """Append-only JSONL of records, each with a unique "key"."""

    def __init__(self, path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            for i, line in enumerate(lines):
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    if i == len(lines) - 1:
                        break  # the line a killed run was writing: drop it, redo that work
                    raise ValueError(f"{self.path}: line {i + 1} is not JSON; the log is damaged") from None
                self.records[rec["key"]] = rec
            # rewrite without the damaged tail, so appends start on a fresh line
            self._rewrite()

    def _rewrite(self):
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records.values()))
        os.replace(tmp, self.path)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def add(self, record: dict) -> None:
        if "key" not in record:
            raise ValueError("a result record needs a 'key'")
        rec = _json_safe(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec, allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records[rec["key"]] = rec

    def values(self) -> list[dict]:
        return list(self.records.values())


def check_run(run_dir: Path, settings: dict) -> None:
    """Write run.json, or check that an earlier run in `run_dir` used the same settings (n may grow)."""
    path = Path(run_dir) / "run.json"
    if path.exists():
        old = json.loads(path.read_text())
        a = {k: v for k, v in old.items() if k != "n"}
        b = {k: v for k, v in _json_safe(settings).items() if k != "n"}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ValueError(f"{run_dir} holds results made with other settings ({', '.join(diff)}); "
                             "rerun with those settings to resume, or choose another --out")
    write_json(path, settings)


def figure(value, convention: str, **extra) -> dict:
    """One reported figure: its value and how it was computed."""
    return {"value": _json_safe(value), "convention": convention, **_json_safe(extra)}


def mean_or_nan(values) -> float:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(v)) if v else float("nan")


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
