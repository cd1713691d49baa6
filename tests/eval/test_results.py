"""Resumable result logs: a killed run's half-written line is dropped, other settings are refused."""

import json
import math

import pytest

from kinema.eval.results import ResultLog, check_run, write_json


def test_log_resumes_and_drops_a_truncated_last_line(tmp_path):
    log = ResultLog(tmp_path / "r.jsonl")
    log.add(dict(key="a", value=1.0))
    log.add(dict(key="b", value=float("nan")))  # strict JSON: NaN is written as null
    with open(tmp_path / "r.jsonl", "a") as fh:
        fh.write('{"key": "c", "val')  # what a killed run leaves behind
    again = ResultLog(tmp_path / "r.jsonl")
    assert "a" in again and "b" in again and "c" not in again
    assert again.records["b"]["value"] is None
    again.add(dict(key="c", value=3))
    assert [json.loads(x)["key"] for x in (tmp_path / "r.jsonl").read_text().splitlines()] == ["a", "b", "c"]


def test_run_settings_must_match_except_a_larger_n(tmp_path):
    check_run(tmp_path, dict(n=2, size=64))
    check_run(tmp_path, dict(n=5, size=64))
    with pytest.raises(ValueError, match="other settings \\(size\\)"):
        check_run(tmp_path, dict(n=5, size=32))


def test_write_json_is_strict(tmp_path):
    path = write_json(tmp_path / "s.json", {"x": math.inf, "y": [1.0, math.nan]})
    assert json.loads(path.read_text()) == {"x": None, "y": [1.0, None]}
