"""Reward-model training on the tiny model: BT maths, pairs, learning, env plug-in, best-of-n, CLI."""

import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.reward_model import (
    Pair,
    RewardModelConfig,
    best_of_n,
    bradley_terry_loss,
    make_pairs,
    rank_candidates,
    sample_best_of_n,
    task_setup,
)
from textenv.models import tiny_model
from textenv.rewards import Completion, resolve


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny RM trained on TextCount pairs (shared: training is the slow part)."""
    from agents.reward_model import train_reward_model

    out = tmp_path_factory.mktemp("rm") / "count"
    # "truncate" negatives (the full reference vs its first half) are what a 2-layer random GPT-2
    # learns in a few dozen steps; swapped/shuffled references need hundreds.
    config = RewardModelConfig(env="TextCount-v0", model="tiny", max_steps=16, batch_size=8, lr=3e-3,
                               max_length=32, device="cpu", out=str(out), limit=160, eval_limit=40,
                               negatives="truncate", seed=0)
    return out, train_reward_model(config)


def test_bradley_terry_loss_hand_computed():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    # -log sigmoid(1) = log(1 + e^-1); -log sigmoid(-1) = log(1 + e)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("negatives", ["mix", "swap", "shuffle", "truncate"])
def test_pairs_well_formed_and_seeded(negatives):
    pairs = make_pairs("TextCount-v0", "validation", "tiny", negatives=negatives, limit=20, seed=3)
    assert len(pairs) == 20 and all(isinstance(p, Pair) for p in pairs)
    assert all(p.chosen != p.rejected and p.chosen.strip() and p.rejected.strip() for p in pairs)
    setup = task_setup("TextCount-v0", "validation", "tiny")
    prompts = {setup.prompt_text(ex) for ex in setup.examples}
    assert all(p.prompt in prompts and p.chosen.startswith(" ") for p in pairs)
    assert pairs == make_pairs("TextCount-v0", "validation", "tiny", negatives=negatives, limit=20, seed=3)
    assert pairs != make_pairs("TextCount-v0", "validation", "tiny", negatives=negatives, limit=20, seed=4)


def test_sentiment_pairs_share_the_prompt():
    pairs = make_pairs("TextSentiment-v0", "validation", "tiny", limit=10, seed=0)
    assert len(pairs) == 10
    assert all(p.prompt.startswith("Continue this tweet in a positive way: ") for p in pairs)
    assert all(p.chosen != p.rejected for p in pairs)
    assert pairs == make_pairs("TextSentiment-v0", "validation", "tiny", limit=10, seed=0)


def test_rank_candidates_by_heuristic():
    pairs = rank_candidates(["Count: 1 2 3", "Count: 5 6 7"],
                            [[" 9 8 7 6 5 4 3", " 4 5 6 7 8 9 10", " 4 5 9 1"], [" 8 8 8", " 8 8 8"]],
                            "increasing")
    assert pairs == [Pair("Count: 1 2 3", " 4 5 6 7 8 9 10", " 9 8 7 6 5 4 3")]  # the tie is skipped


def test_training_beats_chance(trained):
    out, metrics = trained
    assert metrics["eval/accuracy_after"] > 0.6
    assert metrics["eval/accuracy_after"] > metrics["eval/accuracy_before"]
    assert metrics["eval/loss_after"] < metrics["eval/loss_before"]
    files = ("model.safetensors", "tokenizer.json", "metrics.json", "reward_model_config.json", "COMPLETE")
    for name in files:
        assert (out / name).exists(), name


def test_checkpoint_is_an_env_reward(trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _ = trained
    env = gym.make("TextCount-v0", model="tiny", reward=resolve("classifier", path=out))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(3, 200)))
        if terminated or truncated:
            break
    assert math.isfinite(reward)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        manual = model(**tok([info["prompt"] + info["text"]], return_tensors="pt")).logits[0, 0].item()
    assert reward == pytest.approx(manual, abs=1e-5)
    env.close()


def test_best_of_n_picks_the_max_score(trained):
    out, _ = trained
    tokenizer = task_setup("TextCount-v0", "train", "tiny").tokenizer
    policy = tiny_model(tokenizer, seed=1)
    prompts = ["Count: 1 2 3", "Count: 20 21 22"]
    result = sample_best_of_n(policy, tokenizer, prompts, n=4, reward_model=out, max_new_tokens=6, seed=0)
    assert [len(c) for c in result.candidates] == [4, 4] and [len(s) for s in result.scores] == [4, 4]
    for best, cands, scores in zip(result.best, result.candidates, result.scores, strict=True):
        assert best == cands[int(np.argmax(scores))]
    rm = resolve("classifier", path=out)
    rescored = rm([Completion(prompt=p, text=c) for p, cs in zip(prompts, result.candidates, strict=True)
                   for c in cs])
    assert np.allclose(np.ravel(result.scores), rescored, atol=1e-5)
    assert best_of_n(policy, tokenizer, prompts, 4, out, max_new_tokens=6, seed=0) == result.best


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "agents.reward_model", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--train-layers" in proc.stdout and "--preset" in proc.stdout
