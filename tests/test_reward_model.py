"""Reward-model training on the tiny model: BT maths, pairs, learning, accuracy reports, env plug-in, CLI."""

import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_refused_at_parse

from agents.preferences import Pair, length_matched, make_pairs, rank_candidates, sample_pairs, task_setup
from agents.reward_model import RewardModelConfig, accuracy_report, bradley_terry_loss
from textenv.rewards import resolve


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny RM trained on TextCount pairs (shared: training is the slow part)."""
    from agents.reward_model import train_reward_model

    out = tmp_path_factory.mktemp("rm") / "count"
    # brevity negatives (the full reference vs its first third or first word) are what a 2-layer
    # random GPT-2 learns in a few dozen steps; swapped/shuffled references need hundreds.
    config = RewardModelConfig(env="TextCount-v0", model="tiny", max_steps=16, batch_size=8, lr=3e-3,
                               max_length=32, device="cpu", out=str(out), limit=160, eval_limit=40,
                               kinds="truncate,short", seed=0, samples_per_prompt=0)
    return out, train_reward_model(config)


def test_bradley_terry_loss_hand_computed():
    rc, rr = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    # -log sigmoid(1) = log(1 + e^-1); -log sigmoid(-1) = log(1 + e)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("kinds", [None, ("swap",), ("shuffle",), ("truncate", "short")])
def test_pairs_well_formed_and_seeded(kinds):
    pairs = make_pairs("TextCount-v0", "validation", "tiny", limit=20, seed=3, kinds=kinds)
    assert len(pairs) == 20 and all(isinstance(p, Pair) for p in pairs)
    assert all(p.chosen != p.rejected and p.chosen.strip() and p.rejected.strip() for p in pairs)
    assert kinds is None or {p.kind for p in pairs} <= set(kinds)
    setup = task_setup("TextCount-v0", "validation", "tiny")
    prompts = {setup.prompt_text(ex) for ex in setup.examples}
    refs = {" " + r for ex in setup.examples for r in ex.references}
    assert all(p.prompt in prompts and p.chosen.startswith(" ") and p.chosen in refs for p in pairs)
    for p in pairs:
        if p.kind in ("truncate", "short"):  # a brevity negative is a strict prefix of the chosen side
            assert p.chosen.startswith(p.rejected) and len(p.rejected) < len(p.chosen)
    assert pairs == make_pairs("TextCount-v0", "validation", "tiny", limit=20, seed=3, kinds=kinds)
    assert pairs != make_pairs("TextCount-v0", "validation", "tiny", limit=20, seed=4, kinds=kinds)


def test_every_mix_of_task_pairs_has_brevity_negatives():
    kinds = {p.kind for p in make_pairs("TextSummarize-v0", "validation", "tiny", limit=80, seed=0)}
    assert {"swap", "shuffle"} <= kinds and kinds & {"truncate", "short"}


def test_sentiment_pairs_share_the_prompt_and_agree_with_vader():
    from textenv.rewards.sentiment import Vader

    pairs = make_pairs("TextSentiment-v0", "validation", "tiny", limit=30, seed=0)
    assert len(pairs) == 30
    assert all(p.prompt.startswith("Continue this tweet in a positive way: ") for p in pairs)
    assert all(p.chosen != p.rejected for p in pairs)
    vader = Vader().polarity
    sentiment = [p for p in pairs if p.kind == "sentiment"]
    assert sentiment and all(a - b >= 0.5 for a, b in (vader([p.chosen, p.rejected]) for p in sentiment))
    # length-matched: a reward model must not learn that the shorter rest is the positive one
    assert all(abs(len(p.chosen.split()) - len(p.rejected.split())) <= 1 for p in sentiment)
    assert pairs == make_pairs("TextSentiment-v0", "validation", "tiny", limit=30, seed=0)


def test_sampled_pairs_are_ranked_by_the_task_reward():
    setup = task_setup("TextCount-v0", "validation", "tiny")
    pairs = sample_pairs("TextCount-v0", "validation", "tiny", setup.tokenizer, prompts=12, samples=4, margin=0.1,
                         max_new_tokens=12, seed=0)
    sampled = [p for p in pairs if p.kind == "sampled"]
    assert sampled
    reward = resolve("increasing")
    from textenv.rewards import Completion

    for p in sampled:  # the labeler (the task's reward) prefers the chosen side by the margin
        good, bad = reward([Completion(prompt=p.prompt, text=t.lstrip(), metadata={"target_pairs": 6})
                            for t in (p.chosen, p.rejected)])
        assert good - bad >= 0.1 - 1e-9
    assert pairs == sample_pairs("TextCount-v0", "validation", "tiny", setup.tokenizer, prompts=12, samples=4,
                                 margin=0.1, max_new_tokens=12, seed=0)


def test_sampled_pairs_are_length_matched_so_brevity_does_not_win():
    import numpy as np

    from agents.preferences import _ranked

    texts = ["ok", "a fine long sentence with many good words here", "a bad long sentence with many poor words here",
             "a long sentence with many plain words in it"]
    scores = [0.5, 0.9, -0.8, 0.0]  # the short neutral text beats the long plain one, as VADER would say
    pairs = _ranked("p", texts, scores, margin=0.1, rng=np.random.default_rng(0), brevity=0.0)
    # best vs worst of a similar length; "ok" over the long plain text would teach brevity: not a pair
    assert [(p.chosen.strip(), p.rejected.strip()) for p in pairs] == [(texts[1], texts[2])]


def test_accuracy_report_by_kind_and_length():
    pairs = [Pair("p", " a b c d", " e f g h", "swap"), Pair("p", " a b c d", " a", "truncate"),
             Pair("p", " x y z w", " w z y x", "shuffle")]
    assert [length_matched(p) for p in pairs] == [True, False, True]
    report = accuracy_report(pairs, np.array([1.0, 2.0, -1.0]))
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["accuracy_length_matched"] == pytest.approx(0.5) and report["pairs_length_matched"] == 2
    assert report["accuracy/truncate"] == 1.0 and report["accuracy/shuffle"] == 0.0 and report["pairs/swap"] == 1


def test_rank_candidates_by_heuristic():
    pairs = rank_candidates(["Count: 1 2 3", "Count: 5 6 7"],
                            [[" 9 8 7 6 5 4 3", " 4 5 6 7 8 9 10", " 4 5 9 1"], [" 8 8 8", " 8 8 8"]],
                            "increasing")
    assert pairs == [Pair("Count: 1 2 3", " 4 5 6 7 8 9 10", " 9 8 7 6 5 4 3", "sampled")]  # the tie is skipped


def test_training_beats_chance(trained):
    out, metrics = trained
    assert metrics["eval/accuracy_after"] > 0.6
    assert metrics["eval/accuracy_after"] > metrics["eval/accuracy_before"]
    assert metrics["eval/loss_after"] < metrics["eval/loss_before"]
    assert metrics["eval/after/accuracy"] == metrics["eval/accuracy_after"]
    assert set(metrics["train_pair_kinds"]) <= {"truncate", "short"}
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
    tok.truncation_side = "left"  # the last 32 tokens, as the reward model was trained (max_length=32)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        manual = model(**tok([info["prompt"] + info["text"]], truncation=True, max_length=32,
                             return_tensors="pt")).logits[0, 0].item()
    assert reward == pytest.approx(manual, abs=1e-5)
    env.close()


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "agents.reward_model", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--train-layers" in proc.stdout and "--preset" in proc.stdout


def test_classifier_reward_reads_what_the_reward_model_was_trained_on(trained):
    """A reward model trained on the last N tokens is scored on the last N tokens: with a longer
    window the same checkpoint would see inputs unlike any it learned from."""
    from textenv.rewards.classifier import SequenceClassifier

    out, _ = trained
    assert SequenceClassifier(out).max_length == 32  # the fixture's RewardModelConfig(max_length=32)
    assert SequenceClassifier(out, max_length=64).max_length == 64


@pytest.mark.parametrize("flags, field", [
    (["--max-steps", "0"], "max_steps"), (["--max-steps", "-1"], "max_steps"), (["--epochs", "0"], "epochs"),
    (["--batch-size", "0"], "batch_size"), (["--lr", "0"], "lr"), (["--lr", "nan"], "lr"),
    (["--max-length", "0"], "max_length"), (["--limit", "-1"], "limit"), (["--eval-limit", "-1"], "eval_limit"),
    (["--sample-prompts", "-1"], "sample_prompts"), (["--eval-sample-prompts", "-1"], "eval_sample_prompts"),
    (["--sample-margin", "-0.1"], "sample_margin"), (["--sample-temperature", "0"], "sample_temperature"),
    (["--sample-max-new-tokens", "0"], "sample_max_new_tokens"), (["--train-layers", "-2"], "train_layers"),
    (["--weight-decay", "-1"], "weight_decay"), (["--samples-per-prompt", "1"], "samples_per_prompt"),
    (["--eval-split", "dev"], "eval_split"),
    (["--kinds", "bogus"], "bogus"), (["--kinds", "swap,bogus"], "bogus"),
])
def test_bad_values_are_refused_at_parse_time(tmp_path, monkeypatch, capsys, flags, field):
    """Audit #15: every numeric field has its range and ``--kinds`` its known names, checked when
    the flags are parsed: one line naming the field, exit 2, nothing written."""
    from agents.reward_model import main

    assert_refused_at_parse(main, ["--preset", "tiny", "--out", str(tmp_path / "out"), *flags], field, tmp_path,
                            monkeypatch, capsys)


def test_unknown_pair_kinds_name_the_known_ones():
    """Audit #15: ``--kinds bogus`` silently dropped every task pair; a kind the task does not make
    (sentiment pairs on the counting task) is refused too, naming those it makes."""
    from agents.preferences import TASK_PAIR_KINDS
    from textenv.cli import parse_config

    with pytest.raises(ValueError, match="unknown pair kinds.*bogus.*" + ", ".join(TASK_PAIR_KINDS)):
        parse_config(RewardModelConfig, ["--kinds", "bogus"])
    assert parse_config(RewardModelConfig, ["--kinds", "swap, truncate"]).kind_filter() == ("swap", "truncate")
    assert parse_config(RewardModelConfig, []).kind_filter() is None
    with pytest.raises(ValueError, match="makes no pairs of kinds sentiment.*it makes .*swap"):
        make_pairs("TextCount-v0", "validation", "tiny", limit=8, kinds=("sentiment",))


@pytest.mark.parametrize("out", ["/proc/textenv-rm", "{tmp}/a-file/ckpt"])
def test_unwritable_out_is_refused_before_any_work(tmp_path, monkeypatch, out):
    """Audit #14: ``--out`` that cannot be written fails before pairs are sampled or a model loads."""
    import os

    import agents.reward_model as rm

    if out.startswith("/proc") and not os.path.isdir("/proc"):
        pytest.skip("no /proc here")
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setattr(rm, "build_pairs", lambda *a, **k: pytest.fail("built pairs before checking --out"))
    out = out.format(tmp=tmp_path)
    with pytest.raises(OSError, match=f"cannot write {out}"):
        rm.train_reward_model(RewardModelConfig(env="TextCount-v0", model="tiny", device="cpu", out=out))
    assert not os.path.exists(out)


def test_a_run_sweeps_temporary_folders_that_killed_runs_left(tmp_path, monkeypatch):
    """Audit #4: a killed run's ``.<out>.tmp-*`` folder is removed when the next run starts; one
    touched within the last hour may be a live run's and stays."""
    import os

    import agents.reward_model as rm

    stale, live = tmp_path / ".rm.tmp-killed", tmp_path / ".rm.tmp-live"
    for folder in (stale, live):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half a model")
    os.utime(stale, (0, os.path.getmtime(stale) - 2 * 3600))

    def build_checks(*args, **kwargs):
        assert not stale.exists() and live.exists()  # swept at the start, before any work
        raise RuntimeError("stop here")

    monkeypatch.setattr(rm, "build_pairs", build_checks)
    with pytest.raises(RuntimeError, match="stop here"):
        rm.train_reward_model(RewardModelConfig(env="TextCount-v0", model="tiny", device="cpu",
                                                out=str(tmp_path / "rm")))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".rm.tmp-live"]


def _tiny_sft_checkpoint(path, drop: str | None = None):
    """A tiny SFT-style checkpoint (LM + tokenizer, COMPLETE); ``drop`` removes the tensors whose
    names start with it from its safetensors."""
    from safetensors.torch import load_file, save_file

    from textenv.io import atomic_dir
    from textenv.models import tiny_model

    tok = task_setup("TextCount-v0", "train", "tiny").tokenizer
    with atomic_dir(path) as tmp:
        tiny_model(tok).save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    if drop:
        weights = load_file(path / "model.safetensors")
        save_file({k: v for k, v in weights.items() if not k.startswith(drop)}, path / "model.safetensors",
                  metadata={"format": "pt"})
    return path


def test_reward_model_trunk_loads_from_a_whole_sft_checkpoint(tmp_path):
    """The new score head is the one tensor a reward model may lack; the trunk is the checkpoint's."""
    from safetensors.torch import load_file

    from agents.reward_model import load_reward_model

    ck = _tiny_sft_checkpoint(tmp_path / "sft")
    _, model = load_reward_model(str(ck), seed=3)
    state = model.state_dict()
    for name, tensor in load_file(ck / "model.safetensors").items():
        torch.testing.assert_close(state[name], tensor)
    torch.testing.assert_close(model.score.weight, load_reward_model(str(ck), seed=3)[1].score.weight)


def test_reward_model_refuses_a_checkpoint_with_missing_blocks(tmp_path):
    """Audit #9: the trunk came from a plain ``from_pretrained``, so a checkpoint missing a block
    trained a reward model on random layers (exit 0). Now: the check ``agents.ppo`` makes."""
    from agents.reward_model import load_reward_model

    ck = _tiny_sft_checkpoint(tmp_path / "sft", drop="transformer.h.1.")  # a GPT-2 block: 12 tensors
    with pytest.raises(ValueError, match=f"{ck}.*12 missing"):
        load_reward_model(str(ck))
    proc = subprocess.run([sys.executable, "-m", "agents.reward_model", "--model", str(ck), "--env", "TextCount-v0",
                           "--samples-per-prompt", "0", "--limit", "8", "--eval-limit", "8", "--max-length", "32",
                           "--device", "cpu", "--out", str(tmp_path / "rm")], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(ck) in errors[0] and "12 missing" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "rm").exists()
