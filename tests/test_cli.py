"""Every command-line entry point answers --help (a subprocess each: what a user runs)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module,flag", [
    ("textenv", "--policy"),
    ("evals.run", "--policy"),
    ("evals.bench_rollout", "--num-envs"),
    ("textenv.rewards.sentiment", "train"),
])
def test_help(module, flag):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-1000:]
    assert flag in out.stdout
