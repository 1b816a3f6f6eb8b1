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


@pytest.mark.parametrize("args, flag", [
    (["--iterations", "0"], "iterations"),
    (["--minibatch-size", "0"], "minibatch_size"),
    (["--checkpoint-every", "0"], "checkpoint_every"),
    (["--lr", "-1"], "lr"),
    (["--env", "NoSuchEnv-v0"], "NoSuchEnv"),
])
def test_bad_ppo_flags_are_one_line_errors_and_write_nothing(tmp_path, args, flag):
    proc = subprocess.run([sys.executable, "-m", "agents.ppo", "--preset", "tiny", "--runs", str(tmp_path / "runs"),
                           *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
