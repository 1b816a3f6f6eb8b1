"""The benchmark runs and reports consistent numbers. No speed is asserted: timings are benchmarks."""

import math
import subprocess
import sys

import pytest

from evals.benchmarks.env import BenchConfig, format_table, run


def test_run_tiny_settings_gives_consistent_rates():
    result = run(env="TextCount-v0", models=["tiny"], env_model="tiny", num_envs=2, tokens=60,
                 warmup=4, model_steps=3, seed=0, threads=1)
    env, model, ratio = result["env"], result["model"], result["ratio"]
    assert set(env) == {"single", "vector", "sync"}
    assert set(model) == set(ratio) == {"tiny"}
    rates = [e["rate"] for e in env.values()] + [model["tiny"]["rate_1"], model["tiny"]["rate_b"]]
    assert all(math.isfinite(r) and r > 0 for r in rates)
    # TextCount-v0 episodes last 16 tokens, so 60 timed token-steps end at least one episode.
    assert env["single"]["episodes"] >= 1
    r = ratio["tiny"]
    assert r["single"] == pytest.approx(env["single"]["rate"] / model["tiny"]["rate_1"])
    assert r["vector"] == pytest.approx(env["vector"]["rate"] / model["tiny"]["rate_b"])
    assert r["sync"] == pytest.approx(env["sync"]["rate"] / model["tiny"]["rate_b"])
    assert result["config"]["models"] == ["tiny"] and result["config"]["num_envs"] == 2
    table = format_table(result)
    assert "verdict vs tiny:" in table and "TextCount-v0" in table


def test_bad_settings_raise_early():
    with pytest.raises(ValueError, match="num-envs"):
        run(BenchConfig(num_envs=0))
    with pytest.raises(ValueError, match="models"):
        run(models="")


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "evals.benchmarks.env", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--num-envs" in proc.stdout and "--models" in proc.stdout


def test_turns_benchmark_compares_identical_conversations():
    """The extended and re-prefilled caches give the same greedy conversations (the benchmark's
    paths do the same work) and both report a rate."""
    from evals.benchmarks.turns import main

    out = main(["--models", "tiny", "--num-envs", "3", "--turns", "2", "--max-turn-tokens", "4", "--repeats", "1"])
    assert out["tiny/3/identical"] == 1.0
    assert out["tiny/3/extend"] > 0 and out["tiny/3/re-prefill"] > 0
    assert out["tiny/3/ratio"] == pytest.approx(out["tiny/3/extend"] / out["tiny/3/re-prefill"])


def test_turns_benchmark_on_tool_episodes_agrees_across_paths():
    """Tool episodes play the demonstrations; the extended and re-prefilled caches give the model the
    same argmax at every step."""
    from evals.benchmarks.turns import main

    out = main(["--models", "tiny", "--num-envs", "2", "--tools", "--difficulty", "2", "--repeats", "1"])
    assert out["tiny/2/identical"] == 1.0 and out["tiny/2/extend"] > 0 and out["tiny/2/re-prefill"] > 0
