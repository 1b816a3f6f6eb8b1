"""The pipeline runs SFT -> reward model -> PPO on the tiny model and skips finished stages."""

import subprocess
import sys

import pytest

from agents.checkpoint import is_complete
from agents.pipeline import PipelineConfig, run_pipeline
from agents.policy import LMActorCritic


@pytest.mark.slow
def test_pipeline_writes_four_checkpoints_then_skips_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path / "cache"))
    cfg = PipelineConfig(task="TextCount-v0", model="tiny", ppo_iterations=1, device="cpu", out=str(tmp_path / "p"))
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
