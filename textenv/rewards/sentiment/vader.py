"""VADER (Hutto & Gilbert, 2014): a sentiment lexicon with rules, no training, no download."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textenv.rewards.base import Completion

__all__ = ["VADER_FEATURES", "VADER_THRESHOLD", "Vader", "vader_features", "vader_label"]


VADER_THRESHOLD = 0.05
"""|compound| below this is neutral: the thresholds recommended by VADER's authors."""

VADER_FEATURES = ("neg", "neu", "pos", "compound")
"""VADER's four scores, in the order the classifier head reads them."""


class Vader:
    """VADER (Hutto & Gilbert, 2014) polarity of ``c.text``; needs no model download.

    ``field="compound"`` (default) is the normalised score in [-1, 1]; ``"pos"``, ``"neu"`` and
    ``"neg"`` are the proportions in [0, 1]. ``vaderSentiment`` is imported on first call so that
    importing this module stays cheap.
    """

    name = "vader"
    FIELDS = ("compound", "pos", "neu", "neg")

    def __init__(self, field: str = "compound") -> None:
        if field not in self.FIELDS:
            raise ValueError(f"field must be one of {self.FIELDS}, got {field!r}")
        self.field = field
        self._analyzer: Any = None

    def polarity(self, texts: Sequence[str]) -> list[float]:
        """The chosen VADER field for each text."""
        if self._analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._analyzer = SentimentIntensityAnalyzer()
        return [float(self._analyzer.polarity_scores(t)[self.field]) for t in texts]

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        return self.polarity([c.text for c in completions])


def vader_label(compound: float) -> str:
    """3-class label from a VADER compound score with the usual ±0.05 thresholds."""
    if compound >= VADER_THRESHOLD:
        return "positive"
    if compound <= -VADER_THRESHOLD:
        return "negative"
    return "neutral"


def vader_features(texts: Sequence[str]) -> np.ndarray:
    """VADER's neg / neu / pos / compound for each text, shape ``(len(texts), 4)``: extra head
    inputs that MiniLM's embedding blurs (negation, intensifiers, emoticons)."""
    if not texts:
        return np.zeros((0, len(VADER_FEATURES)), dtype=np.float32)
    cols = [Vader(field).polarity(texts) for field in VADER_FEATURES]
    return np.asarray(cols, dtype=np.float32).T
