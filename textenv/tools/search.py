"""The built-in ``search``: the sentences of the episode's passage that best match a query.

Ranked by TF-IDF cosine similarity (scikit-learn's ``TfidfVectorizer``, fitted on the passage's
sentences, English stop words removed), not a hand-written ranker. The passage is the example's
``metadata["passage"]`` (``TextQA-v0``'s Wikipedia paragraph); with this tool the QA prompt shows
only the question, so the passage is reachable through the tool alone.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

__all__ = ["TOP_K", "rank_sentences", "search", "sentences"]

TOP_K = 2
"""How many sentences a search returns, best first."""
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")


def sentences(passage: str) -> tuple[str, ...]:
    """The passage's sentences: split after ``.``, ``!`` or ``?`` followed by a capital, a digit or
    an opening quote or bracket (so "St. Louis" stays whole more often than not)."""
    return tuple(s.strip() for s in _SPLIT.split(passage) if s.strip())


@functools.lru_cache(maxsize=512)
def _index(passage: str) -> tuple[tuple[str, ...], Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    found = sentences(passage)
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    try:
        matrix = vectorizer.fit_transform(found)
    except ValueError:  # nothing but stop words: no vocabulary
        return found, None, None
    return found, vectorizer, matrix


def rank_sentences(query: str, passage: str) -> list[tuple[float, str]]:
    """Every sentence of ``passage`` with its cosine similarity to ``query``, best first (ties in
    passage order); sentences sharing no word with the query score 0."""
    found, vectorizer, matrix = _index(passage)
    if vectorizer is None:
        return [(0.0, s) for s in found]
    scores = (matrix @ vectorizer.transform([query]).T).toarray().ravel()  # rows are L2-normalised
    order = np.argsort(-scores, kind="stable")
    return [(float(scores[i]), found[i]) for i in order]


def search(query: str, example: Any) -> str:
    """Search the passage for the sentences that best match a query (a few keywords of the question)."""
    passage = (getattr(example, "metadata", None) or {}).get("passage")
    if not isinstance(passage, str) or not passage.strip():
        raise ValueError("this task has no passage to search")
    if not query.strip():
        raise ValueError("the query is empty")
    hits = [s for score, s in rank_sentences(query, passage)[:TOP_K] if score > 0]
    return " ".join(hits) if hits else "no sentence of the passage matches the query"
