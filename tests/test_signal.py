"""Training that says when it learns nothing: the per-iteration signal metrics (hand-computed), the
warning and the stop on a constant reward, silence on a run that learns, and the difficulty schedule."""

import csv
import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from agents.learning_signal import DifficultySchedule, SignalMonitor, SignalStats, signal_stats
from agents.ppo import PPOConfig, PPOTrainer
from textenv.cli import RunFailed

TINY = dict(env="TextCount-v0", model="tiny", iterations=4, prompts_per_iter=4, max_new_tokens=8, epochs=1,
            minibatch_size=4, lr=1e-3, tensorboard=False, progress=False, checkpoint_every=1)
REASONING = dict(TINY, env="TextReasoning-v0", prompts_per_iter=2, samples_per_prompt=2, advantage="grpo",
                 max_new_tokens=4, difficulty_schedule=0.9, signal_patience=2)


def _cfg(tmp_path, base=TINY, **kw):
    return PPOConfig(**{**base, "runs": str(tmp_path), **kw})


def _stats(**kw):
    base = dict(reward_min=0.0, reward_max=1.0, frac_truncated=0.0, accuracy=0.5, frac_zero_std_groups=None,
                group_reward_std=None)
    return SignalStats(**{**base, **kw})


def _always(monkeypatch, value):
    """Every episode's task reward is ``value``: the count task's reward and the verifier both."""
    import textenv.rewards.synthetic as synthetic
    import textenv.rewards.verifier as verifier

    monkeypatch.setattr(synthetic.IncreasingNumbers, "__call__", lambda self, cs: [value] * len(cs))
    monkeypatch.setattr(verifier.Verifier, "__call__", lambda self, cs: [value] * len(cs))


# -- the numbers ----------------------------------------------------------------------------------------------


def test_signal_stats_by_hand():
    rewards = np.array([0.0, 0.0, 1.0, 0.0, 0.5, 0.5])  # groups of 2: (0, 0) (1, 0) (.5, .5)
    ended = np.array([True, False, False, False, True, False])
    stats = signal_stats(rewards, ended, group_size=2)
    assert stats.frac_zero_std_groups == pytest.approx(2 / 3)
    assert stats.group_reward_std == pytest.approx((0 + 0.5 + 0) / 3)  # population std of (1, 0) is 0.5
    assert stats.frac_truncated == pytest.approx(4 / 6) and stats.accuracy == pytest.approx(1 / 6)
    assert (stats.reward_min, stats.reward_max, stats.identical) == (0.0, 1.0, False)
    assert set(stats.metrics()) == {"charts/reward_min", "charts/reward_max", "signal/frac_truncated",
                                    "signal/frac_zero_std_groups", "signal/group_reward_std"}
    single = signal_stats(rewards, ended, group_size=1)  # GAE with one sample per prompt: no groups to count
    assert single.frac_zero_std_groups is None and "signal/frac_zero_std_groups" not in single.metrics()
    assert signal_stats(np.full(4, 0.25), np.ones(4, bool), group_size=2).identical


def test_monitor_warns_once_per_stretch_without_signal(caplog):
    monitor = SignalMonitor(patience=2, max_zero_std_groups=0.9, group_advantage=True, budget=8)
    flat = _stats(frac_zero_std_groups=0.95, group_reward_std=0.01)
    fine = _stats(frac_zero_std_groups=0.5, group_reward_std=0.3)
    with caplog.at_level(logging.WARNING, logger="agents.learning_signal"):
        for it, stats in enumerate([flat, flat, flat, flat, fine, flat, flat], start=1):
            monitor.observe(it, stats)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2  # iterations 1-2, then 6-7: once per stretch, not every iteration
    assert "iterations 1-2" in warned[0] and "95% of the groups" in warned[0] and "iterations 6-7" in warned[1]
    gae = SignalMonitor(patience=1, max_zero_std_groups=0.9, group_advantage=False, budget=8)
    gae.observe(1, flat)  # a value head is the baseline: flat groups alone are no reason to warn
    assert gae.streak == 0


def test_monitor_stops_a_reward_constant_from_the_first_iteration_only():
    monitor = SignalMonitor(patience=3, max_zero_std_groups=0.9, group_advantage=False, budget=8)
    zero = _stats(reward_max=0.0, frac_truncated=1.0, accuracy=0.0)
    monitor.observe(1, zero)
    monitor.observe(2, zero)
    with pytest.raises(RunFailed, match=r"all 3 iterations so far got the reward 0.*8-token budget.*"
                                        r"--max-new-tokens.*--difficulty-schedule.*no final/"):
        monitor.observe(3, zero)
    climbing = SignalMonitor(patience=2, max_zero_std_groups=0.9, group_advantage=False, budget=8)
    solved = _stats(reward_min=1.0, frac_truncated=0.0, accuracy=1.0)
    climbing.observe(1, solved)
    climbing.observe(2, solved, task_changed=True)  # a difficulty schedule moved up: judged again from here
    climbing.observe(3, solved)
    with pytest.raises(RunFailed, match="all 2 iterations so far got the reward 1.*too easy"):
        climbing.observe(4, solved)
    varied = SignalMonitor(patience=2, max_zero_std_groups=0.9, group_advantage=False, budget=8)
    varied.observe(1, zero)
    varied.observe(2, _stats(reward_min=1.0, reward_max=1.0))  # constant within each, not over the run
    varied.observe(3, zero)
    assert varied.varied


def test_schedule_rises_after_window_iterations_at_the_threshold():
    schedule = DifficultySchedule(0.8, levels=(1, 2, 3), window=2)
    seen = [(schedule.observe(acc), schedule.level) for acc in (0.9, 0.7, 0.9, 0.8, 1.0, 1.0, 1.0, 1.0)]
    # 0.9 alone is one iteration; (0.9, 0.7) averages 0.8: up; (0.9, 0.8) at level 2: up; level 3 is the last
    assert seen == [(False, 1), (True, 2), (False, 2), (True, 3), (False, 3), (False, 3), (False, 3), (False, 3)]


# -- the trainer ---------------------------------------------------------------------------------------------


def test_constant_reward_warns_then_stops_without_final(tmp_path, monkeypatch, caplog):
    _always(monkeypatch, 0.0)
    trainer = PPOTrainer(_cfg(tmp_path, iterations=6, advantage="grpo", samples_per_prompt=2, prompts_per_iter=2))
    with caplog.at_level(logging.WARNING), pytest.raises(RunFailed, match="all 3 iterations so far got the reward 0"):
        trainer.train()
    assert "no usable learning signal in iterations 1-3" in caplog.text
    assert trainer.iteration == 2 and not (trainer.dir / "final").exists()
    with open(trainer.dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["signal/frac_zero_std_groups"]) for r in rows] == [1.0, 1.0]
    assert all(float(r["charts/reward_max"]) == 0.0 for r in rows)


def test_constant_reward_is_exit_1_with_the_cause_on_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agents.ppo", "--preset", "tiny", "--iterations", "5",
                           "--prompts-per-iter", "4", "--epochs", "1", "--minibatch-size", "4", "--max-new-tokens", "4",
                           "--progress", "false", "--tensorboard", "false", "--runs", str(tmp_path),
                           "--reward", "exact_match"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "got the reward" in errors[0] and "--max-new-tokens" in errors[0]
    (run,) = tmp_path.iterdir()
    assert not (run / "final").exists()


@pytest.mark.parametrize("advantage, samples", [("gae", 1), ("rloo", 2)])
def test_a_run_that_learns_logs_its_signal_and_never_warns(tmp_path, caplog, advantage, samples):
    trainer = PPOTrainer(_cfg(tmp_path, iterations=4, advantage=advantage, samples_per_prompt=samples))
    with caplog.at_level(logging.WARNING):
        history = trainer.train()
    assert not [r for r in caplog.records if r.name == "agents.learning_signal"]
    assert (trainer.dir / "final").is_dir()
    for m in history:
        assert m["charts/reward_min"] <= m["charts/reward_mean"] <= m["charts/reward_max"]
        assert "losses/clipfrac" in m and "signal/difficulty" not in m
        assert ("signal/frac_zero_std_groups" in m) == (samples > 1)
        assert 0 <= m.get("signal/frac_zero_std_groups", 0) < 0.9
    # the tiny model ends few episodes before the budget and still learns (the count reward reads the
    # numbers, not an ending): truncation alone is no reason to warn, only when the rewards are flat too
    assert np.mean([m["signal/frac_truncated"] for m in history]) > 0.5


# -- the difficulty schedule ------------------------------------------------------------------------------------


def _train_prompts(trainer):
    return [e.text for e in trainer.setup.examples[:20]]


def _level_prompts(level):
    from textenv.task_factories import reasoning

    return [e.text for e in reasoning(difficulty=level).load("train")[:20]]


def test_difficulty_rises_when_every_answer_is_correct_and_resume_keeps_it(tmp_path, monkeypatch):
    _always(monkeypatch, 1.0)
    trainer = PPOTrainer(_cfg(tmp_path / "a", REASONING, iterations=5))
    assert _train_prompts(trainer) == _level_prompts(1)
    history = trainer.train()
    # two iterations (signal_patience) at 100% correct per level: 1, 1, 2, 2, 3 -> level 4 next
    assert [m["signal/difficulty"] for m in history] == [1.0, 1.0, 2.0, 2.0, 3.0]
    assert [m["signal/accuracy"] for m in history] == [1.0] * 5
    assert trainer.schedule.level == 3 and _train_prompts(trainer) == _level_prompts(3)
    state = json.loads((trainer.dir / "checkpoint" / "trainer_state.json").read_text())
    assert state["difficulty"] == {"level": 3, "recent": [1.0]}

    part = PPOTrainer(_cfg(tmp_path / "b", REASONING, iterations=3))
    part.train()
    resumed = PPOTrainer(_cfg(tmp_path / "b", REASONING, iterations=5, resume=str(part.dir)))
    assert resumed.schedule.level == 2 and _train_prompts(resumed) == _level_prompts(2)
    rest = resumed.train()
    assert [m["signal/difficulty"] for m in rest] == [2.0, 3.0]
    for key, value in history[-1].items():
        if not key.endswith("per_s"):
            assert rest[-1][key] == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), key


def test_heldout_eval_stays_on_the_envs_own_level(tmp_path, monkeypatch):
    """Training starts at level 1 and climbs; the held-out prompts stay TextReasoning-v0's own (level 2),
    so eval/reward_mean compares with a run without a schedule."""
    from textenv.task_factories import reasoning

    _always(monkeypatch, 1.0)
    trainer = PPOTrainer(_cfg(tmp_path, REASONING, iterations=4, eval_every=4, eval_prompts=4))
    history = trainer.train()
    assert trainer.schedule.level == 3 and "eval/reward_mean" in history[-1]
    default = [e.text for e in reasoning().load("validation")]
    assert [e.text for e in trainer.eval_envs.unwrapped.setup.examples] == default


@pytest.mark.parametrize("env", ["TextCount-v0", "TextSentiment-v0"])
def test_difficulty_schedule_is_refused_on_a_task_without_levels(env):
    with pytest.raises(ValueError, match=f"'{env}' has no difficulty levels"):
        PPOConfig(env=env, difficulty_schedule=0.8)


@pytest.mark.parametrize("field, value", [("difficulty_schedule", 0.0), ("difficulty_schedule", 1.5),
                                          ("max_zero_std_groups", -0.1), ("max_zero_std_groups", 1.5),
                                          ("signal_patience", 0)])
def test_signal_settings_are_refused_outside_their_range(field, value):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{**REASONING, field: value})


def test_difficulty_schedule_on_a_task_without_levels_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agents.ppo", "--preset", "tiny", "--runs", str(tmp_path / "runs"),
                           "--difficulty-schedule", "0.8"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'TextCount-v0' has no difficulty levels" in errors[0]
    assert not (tmp_path / "runs").exists()
