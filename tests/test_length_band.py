"""``--length-band``: L0 from the starting policy's rollout, a penalty only outside the band, L0 kept
across ``--resume``."""

import json

import pytest
import torch
from conftest import rollout_of

from agents.ppo import PPOConfig, PPOTrainer, _shaped_returns

TINY = dict(env="TextCount-v0", model="tiny", iterations=2, prompts_per_iter=4, max_new_tokens=8,
            epochs=1, minibatch_size=4, lr=1e-3, tensorboard=False, progress=False, checkpoint_every=1)


def _cfg(tmp_path, **kw):
    return PPOConfig(**{**TINY, "runs": str(tmp_path), "length_band": (0.75, 1.25), **kw})


def _trimmed_rollouts(monkeypatch, lengths_by_iteration: dict[int, list[int]]) -> None:
    """The tiny model never stops before its 8-token budget: cut iteration ``it``'s episodes to the
    given lengths (the score, a sum of env rewards, is kept) so the lengths differ."""
    original = PPOTrainer.collect

    def collect(self, it):
        record, secs = original(self, it)
        cut = lengths_by_iteration.get(it)
        if cut:  # the rollout record's generated tokens and actions past n are masked out
            for mask in (record.batch.attention_mask[:len(cut), -record.batch.gen_len:], record.batch.action_mask):
                mask[:len(cut)] *= torch.arange(mask.shape[1]) < torch.tensor(cut)[:, None]
        return record, secs

    monkeypatch.setattr(PPOTrainer, "collect", collect)


def test_ref_length_is_the_first_rollouts_mean_and_later_rollouts_are_penalised_against_it(tmp_path, monkeypatch):
    _trimmed_rollouts(monkeypatch, {1: [5, 6, 7, 8], 2: [2, 2, 8, 8]})
    trainer = PPOTrainer(_cfg(tmp_path))
    assert trainer.ref_length is None
    first = trainer.step()
    # L0 = mean(5, 6, 7, 8) = 6.5; band [4.875, 8.125]: every first-iteration episode is inside
    assert trainer.ref_length == 6.5
    assert first["charts/ref_length"] == 6.5 and first["charts/length_penalty_mean"] == 0.0
    second = trainer.step()
    assert trainer.ref_length == 6.5  # not re-measured on the updated policy
    # two episodes of 2 tokens: 1.0 * (4.875 - 2) / 6.5 each, two of 8 inside: mean (2 * 2.875 / 6.5) / 4
    assert second["charts/length_penalty_mean"] == pytest.approx(2 * 2.875 / 6.5 / 4)
    assert second["charts/episode_length"] == 5.0


def test_the_penalty_changes_only_the_scores_of_out_of_band_episodes(tmp_path):
    trainer = PPOTrainer(_cfg(tmp_path, length_coef=2.0, missing_eos_penalty=0.1))
    trainer.ref_length = 10.0  # band [7.5, 12.5]
    eps = rollout_of([[0.0, r] for r in (0.5, 0.25, 1.0, 0.0)], [True] * 4)
    lengths = torch.tensor([5, 8, 12, 15])
    scores, penalty = trainer._episode_rewards(eps, lengths)
    # 5: 2 * 2.5 / 10 = 0.5 below; 8 and 12 inside; 15: 2 * 2.5 / 10 = 0.5 above
    assert penalty.tolist() == pytest.approx([0.5, 0.0, 0.0, 0.5])
    plain = _shaped_returns(eps, trainer.cfg)
    assert scores.tolist() == pytest.approx([0.0, 0.25, 1.0, -0.5])
    assert (scores != plain).tolist() == [True, False, False, True]
    off = PPOTrainer(_cfg(tmp_path, length_band=None))
    assert off._episode_rewards(eps, lengths)[0].tolist() == plain.tolist()


def test_a_resumed_run_keeps_the_checkpoints_ref_length(tmp_path, monkeypatch):
    _trimmed_rollouts(monkeypatch, {1: [4, 4, 4, 4], 2: [8, 8, 8, 8]})
    part = PPOTrainer(_cfg(tmp_path, iterations=1))
    part.train()
    assert part.ref_length == 4.0
    assert json.loads((part.dir / "checkpoint" / "trainer_state.json").read_text())["ref_length"] == 4.0
    resumed = PPOTrainer(_cfg(tmp_path, iterations=2, resume=str(part.dir)))
    assert resumed.ref_length == 4.0
    metrics = resumed.step()  # 8 tokens against L0 = 4: 1.0 * (8 - 5) / 4 each
    assert resumed.ref_length == 4.0 and metrics["charts/length_penalty_mean"] == pytest.approx(0.75)


def test_heldout_eval_reports_its_length_against_the_band(tmp_path):
    trainer = PPOTrainer(_cfg(tmp_path, eval_every=1, eval_prompts=2))
    assert "eval/length_ratio" not in trainer.evaluate_heldout()[0]  # no L0 before the first rollout
    trainer.ref_length = 4.0
    held, _ = trainer.evaluate_heldout()
    assert held["eval/length_ratio"] == held["eval/episode_length"] / 4.0


@pytest.mark.parametrize(("kw", "match"), [
    ({"length_band": (1.5, 0.75)}, r"0 <= lo <= hi, got \(1.5, 0.75\)"),
    ({"length_band": (-0.1, 1.0)}, "0 <= lo <= hi"),
    ({"length_band": (1.0,)}, "two numbers"),
    ({"length_coef": -1.0}, "length_coef must be >= 0, got -1.0"),
])
def test_bad_length_settings_are_refused(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        PPOTrainer(_cfg(tmp_path, **kw))


def test_length_band_parses_from_the_command_line():
    from textenv.cli import parse_config

    cfg = parse_config(PPOConfig, ["--length-band", "0.75", "1.5", "--length-coef", "0.5", "--loss-type", "dr_grpo"])
    assert cfg.length_band == (0.75, 1.5) and cfg.length_coef == 0.5 and cfg.loss_type == "dr_grpo"
