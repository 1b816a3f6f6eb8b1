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


def test_the_learner_benchmarks_dense_variant_is_the_same_learner(monkeypatch):
    """evals.benchmarks.learner's "before" (LM head over every generated column) scores a multi-turn
    batch as the learner does (LM head at the actions only): only its memory may differ."""
    import gymnasium as gym
    import torch

    import agents.policy as policy_module
    from agents.rollout import collect_rollout
    from evals.benchmarks.learner import _dense_columns

    envs = gym.make_vec("TextDialogue-v0", num_envs=3, model="tiny", autoreset_mode="same_step",
                        max_turn_tokens=6, max_new_tokens=60)
    policy = policy_module.LMActorCritic.from_pretrained("tiny", tokenizer=envs.unwrapped.setup.tokenizer)
    batch = collect_rollout(envs, policy, [0, 1, 2], seed=0, generator=torch.Generator().manual_seed(0)).batch
    with torch.no_grad():
        actions = policy.evaluate(batch)
        monkeypatch.setattr(policy_module, "_action_columns", _dense_columns)
        dense = policy.evaluate(batch)
    for a, b in zip(actions, dense, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert batch.gen_len > batch.action_index.shape[1]  # inserted turns: the two really differ in what they compute
