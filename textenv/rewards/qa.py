"""SQuAD's answer scores: exact match and token F1, best over the references.

The official SQuAD v1.1/2.0 evaluation script's definitions (Rajpurkar et al.): both texts are
normalised (lower case, punctuation and the articles a/an/the removed, whitespace collapsed), then
exact match is 1.0 when they are equal and F1 is the harmonic mean of the precision and recall of
their shared tokens (a bag: a token counts as often as it occurs in both). One definition serves
the env's reward and the eval suite's ``exact_match``/``f1`` columns (``evals/metric_modules/
textenv_squad.py`` imports these functions), so training and the leaderboard can never disagree.

>>> round(token_f1("Chicago school", "the Chicago school of economics"), 3)  # precision 1, recall 0.5
0.667
>>> exact_match("The Manhattan Project.", "manhattan project")
1.0
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from textenv.rewards.base import Completion

__all__ = ["ExactMatch", "QAF1", "answer_line", "best_over", "exact_match", "normalize_answer", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces.

    >>> normalize_answer("  The  Chicago-school, (of) Economics! ")
    'chicagoschool of economics'
    """
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised texts are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """F1 of the normalised tokens shared by ``prediction`` and ``reference`` (a bag of tokens).
    Two empty answers agree (1.0); one empty answer scores 0.0, as in SQuAD 2.0's script."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    shared = sum((Counter(pred) & Counter(ref)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over(score, prediction: str, references: Sequence[str]) -> float:
    """``score(prediction, reference)`` at its best over ``references`` (SQuAD's multi-reference rule).
    An example with no reference is an error: a QA score against nothing would be a silent 0."""
    if not references:
        raise ValueError("a QA answer needs at least one reference; this example has none")
    return max(score(prediction, ref) for ref in references)


def answer_line(text: str) -> str:
    """The answer part of a completion: its first line (what a model adds after it is chatter)."""
    return text.strip().split("\n", 1)[0]


class QAF1:
    """Token F1 of the completion's first line against the best reference, in [0, 1]: partial
    credit for a partly right span, which gives RL a gradient where exact match is mostly 0.

    >>> QAF1()([Completion("", "school of economics\\nmore text", references=("Chicago school of economics",))])
    [0.8571428571428571]
    """

    name = "qa_f1"

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        return [best_over(token_f1, answer_line(c.text), c.references) for c in completions]


class ExactMatch:
    """1.0 when the completion's first line equals a reference after SQuAD's normalisation."""

    name = "exact_match"

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        return [best_over(exact_match, answer_line(c.text), c.references) for c in completions]
