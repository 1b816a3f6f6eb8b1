"""The pipeline runs SFT -> reward model -> PPO on the tiny model and skips finished stages."""

import subprocess
import sys

import pytest

from agents.checkpoint import is_complete
from agents.pipeline import PipelineConfig, run_pipeline
from agents.policy import LMActorCritic


@pytest.mark.slow
def test_pipeline_writes_three_checkpoints_then_skips_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path / "cache"))
    cfg = PipelineConfig(task="TextCount-v0", model="tiny", ppo_iterations=1, device="cpu", out=str(tmp_path / "p"))
    report = run_pipeline(cfg)
    for stage in ("sft", "reward_model", "ppo"):
        assert is_complete(report[stage]), stage
    assert report["ppo_metrics"]["iterations"] == 1
    policy = LMActorCritic.from_pretrained(report["ppo"])
    assert policy.model.config.vocab_size == len(policy.tokenizer)
    stamp = (tmp_path / "p" / "ppo" / "COMPLETE").stat().st_mtime_ns
    again = run_pipeline(cfg)
    assert again["sft_metrics"] == again["reward_model_metrics"] == again["ppo_metrics"] == "cached"
    assert (tmp_path / "p" / "ppo" / "COMPLETE").stat().st_mtime_ns == stamp


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "agents.pipeline", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--ppo-reward" in out.stdout


def test_tasks_without_references_get_domain_adaptation_instead_of_sft():
    from agents.pipeline import _has_references

    assert _has_references("TextSummarize-v0") and _has_references("TextCount-v0")
    assert not _has_references("TextSentiment-v0")
