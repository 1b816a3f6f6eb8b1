"""PPO on the tiny model and the synthetic task: finite losses, changed parameters, resume, NaN."""

import csv
import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import rollout_of

from agents.ppo import PPOConfig, PPOTrainer

TINY = dict(env="TextCount-v0", model="tiny", iterations=2, prompts_per_iter=4, max_new_tokens=8,
            epochs=2, minibatch_size=4, lr=1e-3, tensorboard=False, progress=False, checkpoint_every=1)


def _cfg(tmp_path, **kw):
    return PPOConfig(**{**TINY, "runs": str(tmp_path), **kw})


def test_one_update_gives_finite_losses_and_changes_parameters(tmp_path):
    trainer = PPOTrainer(_cfg(tmp_path))
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    metrics = trainer.step()
    for key in ("losses/policy_loss", "losses/value_loss", "losses/approx_kl", "losses/clipfrac",
                "objective/kl", "charts/reward_mean", "charts/tokens_per_s", "rewards/increasing/mean"):
        assert math.isfinite(metrics[key]), key
    changed = [k for k, v in trainer.policy.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("model.") for k in changed) and "value_head.weight" in changed
    # the reference stays the starting policy
    ref = trainer.reference.state_dict()
    assert all(torch.equal(ref[k[len("model."):]], before[k]) for k in before if k.startswith("model."))


@pytest.mark.parametrize("advantage", ["grpo", "rloo"])
def test_group_estimators_run_without_a_critic(tmp_path, advantage):
    trainer = PPOTrainer(_cfg(tmp_path, advantage=advantage, samples_per_prompt=2, prompts_per_iter=2))
    head = trainer.policy.value_head.weight.clone()
    metrics = trainer.step()
    assert math.isfinite(metrics["losses/policy_loss"])
    assert torch.equal(trainer.policy.value_head.weight, head)  # no value loss, no value update


def test_resume_gives_the_same_next_iteration_as_an_uninterrupted_run(tmp_path):
    full = PPOTrainer(_cfg(tmp_path / "a", iterations=2))
    history = full.train()
    part = PPOTrainer(_cfg(tmp_path / "b", iterations=1))
    part.train()
    resumed = PPOTrainer(_cfg(tmp_path / "b", iterations=2, resume=str(part.dir)))
    assert resumed.iteration == 1
    resumed_history = resumed.train()
    assert len(resumed_history) == 1
    for key, value in history[1].items():
        if not key.endswith("per_s"):  # wall-clock rates differ between runs
            assert resumed_history[0][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    with open(part.dir / "metrics.csv") as f:
        assert [int(float(r["iteration"])) for r in csv.DictReader(f)] == [1, 2]


def test_nan_reward_is_skipped_and_reported(tmp_path, monkeypatch):
    import textenv.rewards.synthetic as synthetic

    calls = {"n": 0}
    original = synthetic.IncreasingNumbers.__call__

    def sometimes_nan(self, completions):
        calls["n"] += 1
        out = original(self, completions)
        return [math.nan] * len(out) if calls["n"] == 1 else out

    monkeypatch.setattr(synthetic.IncreasingNumbers, "__call__", sometimes_nan)
    trainer = PPOTrainer(_cfg(tmp_path, iterations=2, checkpoint_every=10))
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    first = trainer.step()
    assert first == {"failures/skipped": 1.0} and trainer.failures == 1 and trainer.iteration == 1
    assert all(torch.equal(v, before[k]) for k, v in trainer.policy.state_dict().items())
    second = trainer.step()
    assert second["failures/skipped"] == 0.0 and trainer.failures == 0 and trainer.iteration == 2


def test_repeated_failures_stop_with_a_clear_error(tmp_path, monkeypatch):
    import textenv.rewards.synthetic as synthetic

    monkeypatch.setattr(synthetic.IncreasingNumbers, "__call__", lambda self, cs: [math.nan] * len(cs))
    trainer = PPOTrainer(_cfg(tmp_path, iterations=5, max_failures=2, checkpoint_every=10))
    with pytest.raises(RuntimeError, match="2 consecutive iterations failed.*non-finite"):
        trainer.train()
    assert not (trainer.dir / "checkpoint").exists() and not (trainer.dir / "final").exists()
    with open(trainer.dir / "metrics.csv") as f:
        assert [float(r["failures/skipped"]) for r in csv.DictReader(f)] == [1.0]


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "agents.ppo", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--kl-target" in out.stdout and "--preset" in out.stdout
    assert "--trust-config-code" in out.stdout and "imports and runs" in " ".join(out.stdout.split())


@pytest.mark.slow
def test_tiny_model_learns_to_count(tmp_path):
    """The documented run is `python -m agents.ppo --preset tiny` (30 iterations); a shorter bar here."""
    from agents.ppo import PRESETS

    cfg = dataclasses.replace(PRESETS["tiny"], iterations=20, runs=str(tmp_path), tensorboard=False, progress=False)
    history = PPOTrainer(cfg).train()
    rewards = [m["charts/reward_mean"] for m in history]
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.1, rewards


@pytest.mark.slow
def test_two_process_accelerate_run_keeps_parameters_identical(tmp_path):
    import re

    out = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                          "-m", "agents.ppo", "--preset", "tiny", "--iterations", "2", "--runs", str(tmp_path),
                          "--progress", "false", "--tensorboard", "false"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    sums = dict(re.findall(r"process (\d)/2 parameter checksum ([0-9a-f]{64})", out.stderr + out.stdout))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"]
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1 and (runs[0] / "final" / "COMPLETE").exists()  # one process wrote one run
    with open(runs[0] / "metrics.csv") as f:
        assert [int(float(r["iteration"])) for r in csv.DictReader(f)] == [1, 2]  # logs not duplicated


def test_top_k_top_p_sampling_trains_with_finite_gradients(tmp_path):
    """Cut tokens hold -inf log-probs; the entropy term must not turn their gradients into NaN."""
    trainer = PPOTrainer(_cfg(tmp_path, top_k=20, top_p=0.9))
    before = trainer.policy.value_head.weight.clone()
    metrics = trainer.step()
    assert metrics["failures/skipped"] == 0.0 and math.isfinite(metrics["losses/policy_loss"])
    assert not torch.equal(trainer.policy.value_head.weight, before)


def test_heldout_eval_scores_the_task_reward_when_training_on_a_reward_model(tmp_path):
    """PPO on a reward model is judged on held-out prompts by the task's own reward: that is where
    a hacked reward model shows."""
    import gymnasium as gym
    from transformers import AutoModelForSequenceClassification

    from textenv.rewards.classifier import SequenceClassifier
    from textenv.rewards.synthetic import IncreasingNumbers

    tok = gym.make("TextCount-v0", model="tiny").unwrapped.tokenizer
    from textenv.models import tiny_model

    lm = tiny_model(tok)
    config = lm.config.__class__.from_dict({**lm.config.to_dict(), "num_labels": 1})
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    trainer = PPOTrainer(_cfg(tmp_path, reward_model=str(tmp_path / "rm"), eval_every=1, eval_prompts=4))
    assert isinstance(trainer.setup.reward, SequenceClassifier)
    assert isinstance(trainer.eval_envs.unwrapped.setup.reward, IncreasingNumbers)
    metrics, _ = trainer.evaluate_heldout()
    assert 0.0 <= metrics["eval/reward_mean"] <= 1.0  # the counting task's reward, not an RM logit


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    from agents.config import run_dir

    dirs = {run_dir(tmp_path, "TextCount-v0", "sweep", 0) for _ in range(5)}
    assert len(dirs) == 5 and all(d.parent == tmp_path and d.is_dir() for d in dirs)
    for bad in ("../x", "/../../x", "a/b", "..", ".hidden", ""):
        with pytest.raises(ValueError, match="plain name"):
            run_dir(tmp_path, "TextCount-v0", bad, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(d.name for d in dirs)  # nothing outside


def test_resume_keeps_the_runs_own_budget_unless_given(tmp_path, caplog):
    import json
    import logging

    from agents.ppo import resume_config

    run = tmp_path / "run"
    run.mkdir()
    saved = dataclasses.asdict(_cfg(tmp_path, iterations=8, lr=3e-3))
    (run / "config.json").write_text(json.dumps(saved))
    cli = PPOConfig(resume=str(run))  # every other field at its default (iterations=20, lr=1e-5)
    kept = resume_config(cli, ["--resume", str(run)])
    assert kept.iterations == 8 and kept.lr == 3e-3 and kept.resume == str(run)
    with caplog.at_level(logging.INFO, logger="agents.ppo_config"):
        extended = resume_config(dataclasses.replace(cli, iterations=40, lr=1.0),
                                 ["--resume", str(run), "--iterations=40", "--lr", "1.0"])
    assert extended.iterations == 40 and extended.lr == 3e-3  # the budget may change; the algorithm may not
    assert "iterations 8 -> 40" in caplog.text and "keeping the run's own ['lr']" in caplog.text


def test_missing_eos_penalty_lowers_only_the_episodes_cut_by_the_budget():
    from agents.ppo import _shaped_returns

    eps = rollout_of([[0.0, 0.5], [0.0, 0.5]], [True, False])
    assert _shaped_returns(eps, _cfg("unused")).tolist() == [0.5, 0.5]
    assert _shaped_returns(eps, _cfg("unused", missing_eos_penalty=0.25)).tolist() == [0.5, 0.25]
    with pytest.raises(ValueError, match="missing_eos_penalty"):
        PPOTrainer(_cfg("unused", missing_eos_penalty=-1.0))


def test_a_reward_offset_favours_short_episodes_under_gae_unless_scores_are_whitened():
    """Why ``whiten_scores`` exists: every episode scores the same 2.0 (a reward model's offset), the
    value head is still 0, lam < 1: GAE gives a 2-token episode's tokens more advantage than a
    10-token episode's, so PPO learns to stop early. Whitened, equal scores carry no signal."""
    from agents.advantages import update_batch
    from agents.ppo import _shaped_returns

    episodes = [[0.0] * (n - 1) + [2.0] for n in (2, 10)]
    eps = rollout_of(episodes, [True, True])
    mask = torch.tensor([[1.0] * 2 + [0.0] * 8, [1.0] * 10])
    zeros = torch.zeros(2, 10)

    def mean_advantage(**kw):
        scores = _shaped_returns(eps, _cfg("unused", **kw))
        adv = update_batch(scores, zeros, mask, zeros, zeros, kl_coef=0.0, gamma=1.0, lam=0.95).advantages
        return [float(adv[i, : int(mask[i].sum())].mean()) for i in range(2)]

    short, long = mean_advantage()
    assert short > long + 0.5  # the short episode is "better" for no reason but its length
    assert mean_advantage(whiten_scores=True) == [0.0, 0.0]
    scores = _shaped_returns(rollout_of([*episodes, [5.0]], [True, True, False]),
                             _cfg("unused", whiten_scores=True, missing_eos_penalty=0.25))
    # whitened over the batch (population std), then the penalty on the episode without EOS
    assert scores.tolist() == pytest.approx([-1 / math.sqrt(2), -1 / math.sqrt(2), math.sqrt(2) - 0.25], abs=1e-4)


def test_resume_does_not_import_code_named_by_a_run_folder_unless_trusted(tmp_path, monkeypatch):
    import json

    from agents.ppo import resume_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "evil.py").write_text("raise SystemExit('imported!')\n")
    monkeypatch.syspath_prepend(str(run))  # `python -m` from inside the folder puts it on sys.path
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(_cfg(tmp_path, reward="evil:fn"))))
    cli = PPOConfig(resume=str(run))
    with pytest.raises(PermissionError, match="--trust-config-code"):
        resume_config(cli, ["--resume", str(run)])
    trusted = resume_config(dataclasses.replace(cli, trust_config_code=True),
                            ["--resume", str(run), "--trust-config-code"])
    assert trusted.reward == "evil:fn" and trusted.trust_config_code
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resume_config(PPOConfig(resume=str(tmp_path)), ["--resume", str(tmp_path)])


def test_resume_restores_a_checkpoint_a_kill_left_between_renames_and_removes_temp_folders(tmp_path):
    import os

    trainer = PPOTrainer(_cfg(tmp_path, iterations=1))
    trainer.train()
    ckpt = trainer.dir / "checkpoint"
    stale = trainer.dir / ".checkpoint.tmp-killed"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    os.replace(ckpt, trainer.dir / f".checkpoint.old-{os.getpid()}")  # the kill point: old out, new not in
    resumed = PPOTrainer(_cfg(tmp_path, iterations=2, resume=str(trainer.dir)))
    assert resumed.iteration == 1 and ckpt.is_dir()
    resumed.close()  # the run folder is free for the next trainer
    assert sorted(p.name for p in trainer.dir.iterdir() if p.name.startswith(".")) == []
    # a checkpoint whose weights are not the model's is refused, not resumed as a random model
    from safetensors.torch import save_file

    save_file({"nothing.weight": torch.zeros(2)}, ckpt / "model.safetensors")
    with pytest.raises(ValueError, match="do not match its config.json"):
        PPOTrainer(_cfg(tmp_path, iterations=2, resume=str(trainer.dir)))


def test_keep_best_saves_the_weights_of_the_best_heldout_eval(tmp_path, monkeypatch):
    """``keep_best`` writes best/ at each new best held-out eval, the starting policy's included,
    and a resumed run keeps competing against the best so far."""
    from agents.policy import LMActorCritic

    with pytest.raises(ValueError, match="keep_best needs eval_every"):
        PPOTrainer(_cfg(tmp_path, keep_best=True))
    scripted = iter([0.5, 0.2, 0.7, 0.1])  # evals at iterations 0, 1, 2, 3: best at 2
    seen = {}

    def fake_eval(self, n_samples=4):
        seen[self.iteration] = self.policy.model.lm_head.weight.detach().clone()
        return {"eval/reward_mean": next(scripted)}, []

    monkeypatch.setattr(PPOTrainer, "evaluate_heldout", fake_eval)
    trainer = PPOTrainer(_cfg(tmp_path, iterations=3, eval_every=1, keep_best=True))
    trainer.train()
    assert (trainer.best_iteration, trainer.best_eval) == (2, 0.7)
    best = LMActorCritic.from_pretrained(str(trainer.dir / "best"))
    assert torch.equal(best.model.lm_head.weight, seen[2]) and not torch.equal(seen[2], seen[3])
    # resumed for one more iteration: 0.1 does not beat the 0.7 it carried over, best/ is untouched
    resumed = PPOTrainer(_cfg(tmp_path, iterations=4, eval_every=1, keep_best=True, resume=str(trainer.dir)))
    assert resumed.best_iteration == 2
    scripted = iter([0.1])
    resumed.train()
    assert resumed.best_iteration == 2
    assert torch.equal(LMActorCritic.from_pretrained(str(trainer.dir / "best")).model.lm_head.weight, seen[2])


def test_keep_best_keeps_the_starting_policy_when_nothing_beats_it(tmp_path, monkeypatch):
    from agents.policy import LMActorCritic

    scripted = iter([0.9, 0.2, 0.3])
    monkeypatch.setattr(PPOTrainer, "evaluate_heldout",
                        lambda self, n_samples=4: ({"eval/reward_mean": next(scripted)}, []))
    trainer = PPOTrainer(_cfg(tmp_path, iterations=2, eval_every=1, keep_best=True))
    start = trainer.policy.model.lm_head.weight.detach().clone()
    trainer.train()
    assert trainer.best_iteration == 0
    assert torch.equal(LMActorCritic.from_pretrained(str(trainer.dir / "best")).model.lm_head.weight, start)
    assert not torch.equal(trainer.policy.model.lm_head.weight, start)  # while training did move it


@pytest.mark.parametrize("loss_type", ["sequence", "dr_grpo"])
def test_loss_types_train_with_the_envs_token_budget(tmp_path, loss_type, monkeypatch):
    import agents.advantages as advantages
    import agents.ppo as ppo

    seen = []

    def spy(*args, **kwargs):
        seen.append((args[4].loss_type, kwargs.get("max_tokens")))
        return advantages.ppo_loss(*args, **kwargs)

    monkeypatch.setattr(ppo, "ppo_loss", spy)
    trainer = PPOTrainer(_cfg(tmp_path, loss_type=loss_type, advantage="grpo", samples_per_prompt=2,
                              prompts_per_iter=2))
    metrics = trainer.step()
    assert metrics["failures/skipped"] == 0.0 and math.isfinite(metrics["losses/policy_loss"])
    assert set(seen) == {(loss_type, 8)}  # max_new_tokens=8: the env's resolved budget


def test_dr_grpo_does_not_divide_group_advantages_by_their_std(tmp_path, monkeypatch):
    import agents.advantages as advantages
    import agents.ppo as ppo

    scales = []

    def spy(*args, **kwargs):
        scales.append(kwargs["scale_group"])
        return advantages.update_batch(*args, **kwargs)

    monkeypatch.setattr(ppo, "update_batch", spy)
    for loss_type in ("token", "dr_grpo"):
        PPOTrainer(_cfg(tmp_path, loss_type=loss_type, advantage="grpo", samples_per_prompt=2, prompts_per_iter=2,
                        epochs=1)).step()
    assert scales == [True, False]


def test_bad_loss_type_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match="unknown loss_type 'bnpo'"):
        PPOTrainer(_cfg(tmp_path, loss_type="bnpo"))


# -- hardening: what a careless or hostile user can do to a run -----------------------------------------


@pytest.mark.parametrize("reward", [
    {"evil:fn": 1.0},  # a mapping's key
    {"rougeL": 1.0, "pkg.evil:fn": 0.5},
    ["rougeL", "evil:fn"],  # a list element
    {"rougeL": {"nested": "evil:Reward"}},  # nested
])
def test_resume_refuses_code_named_anywhere_in_a_saved_config(tmp_path, monkeypatch, reward):
    import json

    from agents.ppo import resume_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "evil.py").write_text("open(__file__ + '.imported', 'w').close()\ndef fn(cs): return [0.0] * len(cs)\n")
    monkeypatch.syspath_prepend(str(run))
    saved = {**dataclasses.asdict(_cfg(tmp_path)), "reward": reward}
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(PermissionError, match="evil:.*--trust-config-code"):
        resume_config(PPOConfig(resume=str(run)), ["--resume", str(run)])
    assert not (run / "evil.py.imported").exists()


def test_resume_given_a_checkpoint_folder_names_the_run_folder(tmp_path):
    from agents.ppo import resume_config

    trainer = PPOTrainer(_cfg(tmp_path, iterations=1))
    trainer.train()
    ckpt = trainer.dir / "checkpoint"
    with pytest.raises(ValueError, match=f"checkpoint folder.*--resume {trainer.dir}$"):
        resume_config(PPOConfig(resume=str(ckpt)), ["--resume", str(ckpt)])
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"activation_function": "gelu"}')
    with pytest.raises(ValueError, match=r"not a PPO run's config \(unknown: \['activation_function'\]\)"):
        resume_config(PPOConfig(resume=str(tmp_path / "x")), ["--resume", str(tmp_path / "x")])


def test_resume_refuses_a_symlink_in_the_run_folder_and_writes_nothing_through_it(tmp_path):
    trainer = PPOTrainer(_cfg(tmp_path / "runs", iterations=1, eval_every=1, eval_prompts=2))
    trainer.train()
    outside = tmp_path / "precious.txt"
    outside.write_text("mine\n")
    samples = trainer.dir / "samples.jsonl"
    samples.unlink()
    samples.symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link.*samples.jsonl"):
        PPOTrainer(_cfg(tmp_path / "runs", iterations=2, eval_every=1, eval_prompts=2, resume=str(trainer.dir)))
    assert outside.read_text() == "mine\n"
    # the tracker never follows a link either, whoever planted it after the check
    from agents.tracking import Tracker

    with pytest.raises(OSError):
        Tracker(trainer.dir, tensorboard=False).log_samples(3, [{"text": "x"}])
    assert outside.read_text() == "mine\n"


def test_a_second_writer_on_the_same_run_folder_is_refused(tmp_path):
    trainer = PPOTrainer(_cfg(tmp_path, iterations=1))
    trainer.train()  # the lock goes with the end of train()
    first = PPOTrainer(_cfg(tmp_path, iterations=2, resume=str(trainer.dir)))
    with pytest.raises(BlockingIOError, match="in use by another writer"):
        PPOTrainer(_cfg(tmp_path, iterations=2, resume=str(trainer.dir)))
    first.train()
    assert PPOTrainer(_cfg(tmp_path, iterations=2, resume=str(trainer.dir))).iteration == 2


@pytest.mark.parametrize("field, value", [
    ("max_grad_norm", -1.0), ("max_grad_norm", 0.0), ("reward_clip", -1.0), ("clip_range", -0.2),
    ("clip_range_value", 0.0), ("kl_coef", -1.0), ("gamma", 1.5), ("lam", -0.5), ("vf_coef", -0.1),
    ("ent_coef", -0.01), ("reward_scale", 0.0), ("temperature", 0.0), ("top_p", 0.0), ("top_k", -1),
    ("kl_target", -1.0), ("target_approx_kl", 0.0), ("kl_horizon", 0), ("train_layers", -2), ("lr", math.nan),
    ("exp_name", "../escape"), ("eval_split", ""),
])
def test_every_hyperparameter_is_refused_outside_its_range(field, value):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{**TINY, field: value})


def test_a_nonsense_hyperparameter_is_one_line_exit_2_before_anything_is_written(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agents.ppo", "--preset", "tiny", "--runs", str(tmp_path / "runs"),
                           "--max-grad-norm=-1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        "error: ValueError: max_grad_norm must be > 0, got -1.0 (--debug shows the traceback)"]
    assert not (tmp_path / "runs").exists()


def test_a_run_whose_every_iteration_failed_exits_1_without_final(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agents.ppo", "--preset", "tiny", "--iterations", "2",
                           "--prompts-per-iter", "4", "--epochs", "1", "--minibatch-size", "4", "--max-new-tokens", "6",
                           "--progress", "false", "--tensorboard", "false", "--runs", str(tmp_path),
                           "--reward", "os:getcwd"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "error: PPO learned nothing: all 2 iterations were skipped" in proc.stderr
    (run,) = tmp_path.iterdir()
    assert not (run / "final").exists()


def test_a_run_with_one_applied_update_writes_final(tmp_path, monkeypatch):
    import textenv.rewards.synthetic as synthetic

    calls = {"n": 0}
    original = synthetic.IncreasingNumbers.__call__

    def first_fails(self, completions):
        calls["n"] += 1
        return [math.nan] * len(completions) if calls["n"] == 1 else original(self, completions)

    monkeypatch.setattr(synthetic.IncreasingNumbers, "__call__", first_fails)
    trainer = PPOTrainer(_cfg(tmp_path, iterations=2))
    trainer.train()
    assert trainer.updates == 1 and (trainer.dir / "final").is_dir()


def test_run_seeds_keep_the_values_runs_were_trained_with():
    """The seeds of a run's streams, pinned: a changed formula would change every run's results."""
    from agents.seeds import heldout_row_seed, iteration_seed, update_seed

    assert iteration_seed(3, 5, rank=2) == 3_015_852 and iteration_seed(3, 5) == 3_000_014
    assert update_seed(3, 5) == 23_762
    assert heldout_row_seed(3, 5) == 3_000_014
    # one run's iterations on 4 processes draw distinct streams
    assert len({iteration_seed(0, it, rank) for it in range(1, 7919) for rank in range(4)}) == 7918 * 4


@pytest.mark.parametrize("fail", ["render", "sync"])
def test_a_reward_plot_that_fails_mid_write_keeps_the_previous_reward_png(tmp_path, monkeypatch, fail):
    """A failure while the PNG is encoded (after part of its bytes) or while it is synced to disk
    (a full disk) leaves the previous ``reward.png`` as it was, and no temporary file beside it."""
    import errno
    import os
    from pathlib import Path

    import matplotlib.figure

    from agents.run_files import plot_rewards
    from agents.tracking import Tracker

    tracker = Tracker(tmp_path, tensorboard=False)
    tracker.log(1, {"charts/reward_mean": 0.1, "objective/kl": 0.0})
    before = plot_rewards(tmp_path).read_bytes()
    tracker.log(2, {"charts/reward_mean": 0.9, "objective/kl": 0.5})
    tracker.close()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def partial_then_fail(fig, fname, *args, **kwargs):
        if isinstance(fname, (str, os.PathLike)):
            Path(fname).write_bytes(b"\x89PNG partial")
        else:
            fname.write(b"\x89PNG partial")
        no_space()

    with monkeypatch.context() as mp:
        if fail == "render":
            mp.setattr(matplotlib.figure.Figure, "savefig", partial_then_fail)
        else:
            mp.setattr(os, "fsync", no_space)
        with pytest.raises(OSError, match="No space"):
            plot_rewards(tmp_path)
    assert (tmp_path / "reward.png").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if "reward" in p.name] == ["reward.png"]
    assert plot_rewards(tmp_path).read_bytes() != before  # the failed plot would have changed it


def test_resume_reads_the_flags_given_as_the_command_line_parser_does(tmp_path, caplog):
    """``--iter 40`` is ``--iterations 40`` to argparse (an unambiguous prefix): resume extends the run
    by it instead of warning that it ignored a flag named "iter"."""
    import json
    import logging

    from agents.ppo import resume_config

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(_cfg(tmp_path, iterations=8))))
    with caplog.at_level(logging.INFO, logger="agents.ppo_config"):
        cfg = resume_config(PPOConfig(resume=str(run), iterations=40), ["--resume", str(run), "--iter", "40"])
    assert cfg.iterations == 40 and "iterations 8 -> 40" in caplog.text and "keeping" not in caplog.text
