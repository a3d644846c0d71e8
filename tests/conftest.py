"""Test-wide settings and fixtures: tiny models run fastest on one thread, and CI has two cores."""

import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def finished(request, tmp_path_factory) -> Path:
    """A finished tiny `tamnas run`, made once per module from the module's `TINY` settings."""
    from cli_configs import on_cpu

    from tamnas.cli import main

    out = tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_")) / "run"
    assert main(on_cpu("run", "quickstart", "--out", str(out), *request.module.TINY)) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    """A copy of `finished` that a test may change."""
    dest = tmp_path / "copy"
    shutil.copytree(finished, dest)
    return dest
