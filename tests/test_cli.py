"""The command line: one-line errors with exit code 2, and the cheap commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tamnas.cli import main


@pytest.mark.parametrize("argv, fragment", [
    (["train-supernet", "no-such-preset", "--out", "{tmp}/r"], "unknown preset 'no-such-preset'"),
    (["train-supernet", "quickstart", "--out", "{tmp}/r", "--set", "search.pop_size=1"],
     "search.pop_size: 1 is out of range"),
    (["train-supernet", "quickstart", "--out", "{tmp}/r", "--set", "nonsense"],
     "expected section.key=value"),
    (["search", "{tmp}/not-a-run"], "is not a tamnas run directory"),
    (["plot", "{tmp}/not-a-run"], "is not a tamnas run directory"),
    (["search", "{tmp}/r", "--strategy", "mgda", "--targets", "1e5,big"],
     "--targets '1e5,big': give comma-separated parameter counts"),
    (["train-supernet", "quickstart", "--out", "{tmp}/r", "--device", "tpu"], "--device"),
    (["train-supernet", "quickstart", "--out", "{tmp}/r", "--config", "{tmp}/missing.toml"],
     "missing.toml does not exist"),
])
def test_user_errors_are_one_line_and_exit_2(argv, fragment, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tamnas: error:") and fragment in err
    assert len(err.splitlines()) == 1


def test_cuda_device_without_cuda_is_a_user_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert main(["train-supernet", "quickstart", "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_space_info_lists_presets(capsys):
    assert main(["space-info", "--list"]) == 0
    out = capsys.readouterr().out.split()
    assert "quickstart" in out and "cifar10-tamnas" in out


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "tamnas", "--version"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and out.stdout.startswith("tamnas ")
