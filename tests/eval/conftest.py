"""Shared by the evaluation tests: one output folder for the quick benchmark runs, so they share cached episodes."""

import pytest


@pytest.fixture(scope="session")
def eval_out(tmp_path_factory):
    return tmp_path_factory.mktemp("eval")
