"""The pipeline runs SFT -> reward model -> PPO on the tiny model and skips finished stages."""

import subprocess
import sys

import pytest

from agents.pipeline import PipelineConfig, run_pipeline
from agents.policy import LMActorCritic
from textenv.io import is_complete


@pytest.mark.slow
def test_pipeline_writes_four_checkpoints_then_skips_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path / "cache"))
    cfg = PipelineConfig(env="TextCount-v0", model="tiny", ppo_iterations=1, device="cpu", out=str(tmp_path / "p"))
    report = run_pipeline(cfg)
    for stage in ("sft", "reward_model", "ppo_task", "ppo_rm"):
        assert is_complete(report[stage]), stage
    assert report["ppo_task_metrics"]["iterations"] == report["ppo_rm_metrics"]["iterations"] == 1
    assert report["reward_model_metrics"]["train_pair_kinds"].get("sampled", 0) > 0  # the SFT model's own samples
    # the two PPO runs differ only in their reward: the task's, or the reward model's
    import json

    configs = [json.loads((tmp_path / "p" / "ppo_runs" / d / "config.json").read_text())
               for d in sorted(p.name for p in (tmp_path / "p" / "ppo_runs").iterdir())]
    assert sorted(c["reward_model"] is None for c in configs) == [False, True]
    policy = LMActorCritic.from_pretrained(report["ppo_rm"])
    assert policy.model.config.vocab_size == len(policy.tokenizer)
    stamp = (tmp_path / "p" / "ppo_rm" / "COMPLETE").stat().st_mtime_ns
    again = run_pipeline(cfg)
    assert again["sft_metrics"] == again["reward_model_metrics"] == "cached"
    assert again["ppo_task_metrics"] == again["ppo_rm_metrics"] == "cached"
    assert (tmp_path / "p" / "ppo_rm" / "COMPLETE").stat().st_mtime_ns == stamp


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "agents.pipeline", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--ppo-reward" in out.stdout


def test_tasks_without_references_get_domain_adaptation_instead_of_sft():
    from agents.pipeline import _has_references

    assert _has_references("TextSummarize-v0") and _has_references("TextCount-v0")
    assert not _has_references("TextSentiment-v0")


def test_cli_preset_is_the_pipelines_own_field():
    from textenv.cli import parse_config

    assert parse_config(PipelineConfig, ["--preset", "default"]).preset == "default"
    assert parse_config(PipelineConfig, []).preset == "quick"


def test_each_suite_task_gets_its_own_ppo_preset():
    """`make run` and `evals.run --suite full` train with the task-specific presets: GRPO with a
    group of samples on the verifier task, PPO with a value head elsewhere."""
    from agents import ppo, reward_model
    from agents.pipeline import _preset
    from evals.run import QUICK_STAGES, SUITES

    def _ppo_presets(preset, task, reward="task"):
        return _preset(ppo.PRESETS, preset, task, rm=reward == "rm")

    for suite in SUITES.values():
        for task in suite.config.envs:
            if QUICK_STAGES.get(task, {}).get("ppo_reward") == "none":  # an SFT-only row (the tools suite's)
                continue
            cfg = _ppo_presets(suite.preset, task)
            name = task.removeprefix("Text").split("-")[0].lower()
            assert cfg is ppo_presets()[f"{suite.preset}-{name}"], (suite.preset, task)
            assert cfg.eval_every > 0  # held-out evaluation during training in every suite run
    reasoning = _ppo_presets("default", "TextReasoning-v0")
    assert reasoning.advantage == "grpo" and reasoning.samples_per_prompt >= 2
    assert _ppo_presets("quick", "TextCount-v0") is ppo_presets()["quick"]  # no task preset: the generic one
    # PPO on a learned reward model gets its own preset where there is one (whitened scores, its own KL)
    rm = _ppo_presets("quick", "TextSentiment-v0", "rm")
    assert rm is ppo_presets()["quick-sentiment-rm"] and rm.whiten_scores
    assert not _ppo_presets("quick", "TextSentiment-v0").whiten_scores
    assert _ppo_presets("default", "TextSentiment-v0", "rm") is ppo_presets()["default-sentiment"]
    # the reward model too: more of the (cheap) tweet pairs for sentiment, the generic preset elsewhere
    rm_sentiment = _preset(reward_model.PRESETS, "quick", "TextSentiment-v0")
    assert rm_sentiment is reward_model.PRESETS["quick-sentiment"]
    assert rm_sentiment.limit > reward_model.PRESETS["quick"].limit
    assert _preset(reward_model.PRESETS, "quick", "TextSummarize-v0") is reward_model.PRESETS["quick"]
    # SFT too: reasoning's short answers get their own (short sequences, more steps), others the generic one
    from agents import sft

    assert _preset(sft.PRESETS, "quick", "TextReasoning-v0") is sft.PRESETS["quick-reasoning"]
    assert _preset(sft.PRESETS, "quick", "TextSummarize-v0") is sft.PRESETS["quick"]


def test_reward_model_flag_trains_it_for_best_of_n_without_ppo_on_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path / "cache"))
    cfg = PipelineConfig(env="TextCount-v0", model="tiny", ppo_iterations=1, device="cpu", out=str(tmp_path / "p"),
                         ppo_reward="task", reward_model=True)
    report = run_pipeline(cfg)
    assert is_complete(report["reward_model"]) and is_complete(report["ppo_task"])
    assert not (tmp_path / "p" / "ppo_rm").exists()
    assert {"sft_resources", "reward_model_resources", "ppo_task_resources"} <= set(report)
    without = run_pipeline(PipelineConfig(env="TextCount-v0", model="tiny", ppo_iterations=1, device="cpu",
                                          out=str(tmp_path / "q"), ppo_reward="task"))  # the default: not needed
    assert without["reward_model_metrics"].startswith("not trained") and not (tmp_path / "q" / "reward_model").exists()
    with pytest.raises(ValueError, match="--reward-model false with --ppo-reward both"):
        run_pipeline(PipelineConfig(env="TextCount-v0", model="tiny", out=str(tmp_path / "r"), reward_model=False))
    assert not (tmp_path / "r").exists()  # refused before any work


def ppo_presets():
    from agents.ppo import PRESETS

    return PRESETS


def test_stage_memory_gives_each_stage_its_own_peak_and_keeps_the_process_peak():
    """Each lap reports its own stage's peak, and the process's high-water mark (what
    ``/usr/bin/time -v`` reports) is never reset: the old meter wrote /proc/self/clear_refs."""
    import sys
    import time

    import numpy as np

    from agents.tracking import StageMemory, peak_rss_gb

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    with StageMemory() as meter:
        big = np.ones(50_000_000)  # 400 MB, freed within the stage
        time.sleep(0.2)  # long enough for the poller even when an earlier test set a higher record
        del big
        first = meter.lap()
        process_peak = peak_rss_gb()
        second = meter.lap()  # nothing big in this stage: its peak is far below the last one's
    assert first["peak_gb"] > first["rss_gb"] + 0.3  # the peak saw what the current RSS no longer holds
    assert second["peak_gb"] < first["peak_gb"] - 0.3
    assert process_peak >= first["peak_gb"] - 1e-6
    assert peak_rss_gb() >= process_peak  # laps leave the process's own record alone
@pytest.mark.slow
def test_keep_best_preset_hands_the_best_heldout_weights_to_the_leaderboard(tmp_path, monkeypatch):
    """With ``keep_best`` the stage's checkpoint is best/, not final/: here the held-out eval never
    beats the start, so PPO-task is the SFT model's weights and says so in ppo_run.json."""
    import dataclasses
    import json

    import torch

    from agents import ppo

    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(ppo.PRESETS, "quick", dataclasses.replace(ppo.PRESETS["quick"], eval_every=1, eval_prompts=2,
                                                                   keep_best=True))
    scores = iter([0.9, 0.1, 0.9, 0.1])  # the task run, then the reward-model run
    monkeypatch.setattr(ppo.PPOTrainer, "evaluate_heldout",
                        lambda self, n_samples=4: ({"eval/reward_mean": next(scores)}, []))
    cfg = PipelineConfig(env="TextCount-v0", model="tiny", ppo_iterations=1, device="cpu", out=str(tmp_path / "p"))
    report = run_pipeline(cfg)
    assert report["ppo_task_metrics"]["kept_iteration"] == 0
    assert json.loads((tmp_path / "p" / "ppo_task" / "ppo_run.json").read_text())["kept"] == "best"
    sft = LMActorCritic.from_pretrained(report["sft"]).model.state_dict()
    kept = LMActorCritic.from_pretrained(report["ppo_task"]).model.state_dict()
    assert all(torch.equal(kept[k], sft[k]) for k in sft)


def test_every_stage_has_a_tiny_preset_for_the_tiny_model():
    from agents import ppo, reward_model, sft
    from agents.pipeline import _preset
    from textenv.cli import parse_config

    assert parse_config(PipelineConfig, ["--preset", "tiny", "--model", "tiny"]).preset == "tiny"
    for module in (sft, reward_model, ppo):
        cfg = _preset(module.PRESETS, "tiny", "TextCount-v0")
        assert cfg is module.PRESETS["tiny"] and cfg.model == "tiny" and cfg.env == "TextCount-v0"


def test_progress_false_also_silences_transformers_save_bars(tmp_path):
    """``--progress false`` used to leave transformers' "Writing model shards" bar on every save."""
    from transformers.utils import logging as hf_logging

    from agents.tracking import library_progress

    with library_progress(False):
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    out = subprocess.run([sys.executable, "-m", "agents.ppo", "--preset", "tiny", "--iterations", "1", "--progress",
                          "false", "--runs", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Writing model shards" not in out.stderr and list(tmp_path.rglob("final"))


def test_pipeline_progress_false_silences_every_stage(tmp_path):
    """``evals.run --progress false`` trains through the pipeline: SFT's and the reward model's bars
    (ours and transformers') used to show whatever it said."""
    out = subprocess.run([sys.executable, "-m", "agents.pipeline", "--env", "TextCount-v0", "--model", "tiny",
                          "--preset", "tiny", "--ppo-reward", "rm", "--ppo-iterations", "1", "--progress", "false",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for bar in ("sft TextCount-v0:", "reward model:", "eval:", "Writing model shards", "TextCount-v0:  "):
        assert bar not in out.stderr, bar
    assert (tmp_path / "ppo_rm" / "COMPLETE").exists()


def _fake_stages(monkeypatch):
    """Stages that write a finished folder at once and record what they were asked to build."""
    from agents import pipeline
    from textenv.io import atomic_dir

    built = []

    def fake(stage, out):
        built.append((stage.name, stage.config.seed))
        with atomic_dir(out) as tmp:
            (tmp / "weights.txt").write_text(str(stage.config.seed))
        return {"built": True}

    monkeypatch.setattr(pipeline, "_train_stage", fake)
    return built


def test_a_finished_stage_is_reused_only_when_built_with_the_same_settings(tmp_path, monkeypatch, caplog):
    built = _fake_stages(monkeypatch)
    base = dict(env="TextCount-v0", model="tiny", preset="tiny", ppo_reward="task", ppo_iterations=1,
                out=str(tmp_path / "p"), progress=False)
    run_pipeline(PipelineConfig(**base))
    assert built == [("sft", 0), ("ppo_task", 0)]
    again = run_pipeline(PipelineConfig(**base))
    assert again["sft_metrics"] == again["ppo_task_metrics"] == "cached" and len(built) == 2
    other_seed = run_pipeline(PipelineConfig(**base, seed=1))  # the audit's case: was "cached" with seed 0's weights
    assert built[2:] == [("sft", 1), ("ppo_task", 1)]
    assert other_seed["sft_metrics"] == other_seed["ppo_task_metrics"] == {"built": True}
    assert "config.seed: 0 -> 1" in caplog.text
    assert (tmp_path / "p" / "sft" / "weights.txt").read_text() == "1"
    # a PPO setting alone rebuilds PPO only; its SFT start is the same
    more = run_pipeline(PipelineConfig(**{**base, "ppo_iterations": 2}, seed=1))
    assert more["sft_metrics"] == "cached" and built[4:] == [("ppo_task", 1)]
    assert "config.iterations: 1 -> 2" in caplog.text
    # a finished stage with no record of its settings (an older pipeline's) is rebuilt, not trusted
    (tmp_path / "p" / "stages.json").unlink()
    run_pipeline(PipelineConfig(**{**base, "ppo_iterations": 2}, seed=1))
    assert built[5:] == [("sft", 1), ("ppo_task", 1)] and "no record of the settings" in caplog.text


def test_an_upstream_change_rebuilds_every_stage_built_on_it(tmp_path, monkeypatch):
    from agents.pipeline import plan_stages, recipe_changes, stage_dirs

    cfg = PipelineConfig(env="TextCount-v0", model="tiny", preset="tiny", out=str(tmp_path / "p"))
    a = {s.name: s.recipe for s in plan_stages(cfg, stage_dirs(cfg))}
    b = {s.name: s.recipe for s in plan_stages(cfg.__class__(**{**cfg.__dict__, "seed": 3}), stage_dirs(cfg))}
    assert set(a) == {"sft", "reward_model", "ppo_task", "ppo_rm"}
    assert "inputs.sft.config.seed: 0 -> 3" in recipe_changes(a["ppo_rm"], b["ppo_rm"])
    assert "inputs.reward_model.config.seed: 0 -> 3" in recipe_changes(a["ppo_rm"], b["ppo_rm"])
    # paths are recorded relative to --out: a moved pipeline folder is the same pipeline
    moved = PipelineConfig(**{**cfg.__dict__, "out": str(tmp_path / "elsewhere")})
    assert {s.name: s.recipe for s in plan_stages(moved, stage_dirs(moved))} == a


def test_zero_ppo_iterations_is_refused_before_any_stage_trains(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agents.pipeline", "--env", "TextCount-v0", "--model", "tiny",
                           "--preset", "tiny", "--ppo-iterations", "0", "--out", str(tmp_path / "p")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "ppo_iterations must be >= 1" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "p").exists()


def test_two_pipelines_on_one_folder_do_not_build_together(tmp_path, monkeypatch):
    from textenv.io import FolderLock

    _fake_stages(monkeypatch)
    (tmp_path / "p").mkdir()
    lock = FolderLock(tmp_path / "p")  # another pipeline at work there
    with pytest.raises(BlockingIOError, match="in use"):
        run_pipeline(PipelineConfig(env="TextCount-v0", model="tiny", preset="tiny", ppo_reward="task",
                                    out=str(tmp_path / "p")))
    lock.release()


def test_rl_seeds_train_each_rl_stage_per_seed_from_one_sft(tmp_path, monkeypatch):
    built = _fake_stages(monkeypatch)
    base = dict(env="TextCount-v0", model="tiny", preset="tiny", ppo_reward="task", out=str(tmp_path / "p"))
    run_pipeline(PipelineConfig(**base))
    report = run_pipeline(PipelineConfig(**base, rl_seeds=(0, 1, 2)))
    assert built == [("sft", 0), ("ppo_task", 0), ("ppo_task_seed1", 1), ("ppo_task_seed2", 2)]  # SFT, seed 0 reused
    assert report["ppo_task_metrics"] == "cached" and report["ppo_task_seed2_metrics"] == {"built": True}
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["ppo_task", "ppo_task_seed1", "ppo_task_seed2",
                                                                 "sft", "stages.json"]
    run_pipeline(PipelineConfig(**base))  # the other seeds' folders are the pipeline's own, not a user's
    assert len(built) == 4
    with pytest.raises(ValueError, match="rl_seeds must be distinct"):
        PipelineConfig(**base, rl_seeds=(1, 1))


def test_the_suites_read_checkpoints_where_the_pipeline_writes_them(tmp_path):
    """``evals.run`` finds a suite's checkpoints under the pipeline's default root (two spellings of
    that root once drifted apart): one :func:`agents.pipeline.default_root` serves both."""
    from pathlib import Path

    from agents.pipeline import default_root, stage_dirs
    from evals import run
    from textenv.models import DEFAULT_MODEL

    assert default_root("TextCount-v0", "some/dir/my-model") == Path("runs/pipeline/TextCount-v0__my-model")
    cfg = PipelineConfig(env="TextCount-v0", model=DEFAULT_MODEL)
    assert stage_dirs(cfg)["root"] == default_root("TextCount-v0", DEFAULT_MODEL)
    assert Path(run.PIPELINE.format(task="TextCount-v0")) == stage_dirs(cfg)["root"]
    assert run._pipeline_config("TextCount-v0", "quick", DEFAULT_MODEL).out == str(stage_dirs(cfg)["root"])
    assert stage_dirs(PipelineConfig(out=str(tmp_path)))["root"] == tmp_path  # --out still wins
