"""A verifiable reward for reasoning-gym tasks: the dataset's own ``score_answer``.

The env puts the reasoning-gym entry (question, answer, metadata) in ``metadata["entry"]`` and the
dataset name in ``metadata["dataset"]``; the dataset's scorer knows the task's notion of a correct
answer (numeric tolerance, set equality, partial credit), so we never reimplement it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from textenv.rewards.base import Completion

__all__ = ["Verifier", "extract_answer", "last_number"]

ANSWER_MARKER = "Answer:"


def extract_answer(text: str, marker: str = ANSWER_MARKER) -> str:
    """The answer part of a completion: what follows the last ``marker``, else the first line.

    Everything after the marker is kept (stripped), because some tasks have multi-line answers
    (grids); without a marker only the first line counts, so trailing chatter is not scored (the
    :class:`Verifier` then reads a numeric answer as that part's last number).

    >>> extract_answer("I think so.\\nAnswer: 42")
    '42'
    >>> extract_answer("  42\\nbecause 6*7")
    '42'
    """
    text = text.strip()
    if marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text.split("\n", 1)[0].strip()


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number written in ``text``, as a plain numeral: thousands separators dropped, a
    sentence's full stop not taken for a decimal point, a leading ``+`` dropped; None if there is none.

    >>> last_number("The final answer is -1.")
    '-1'
    >>> last_number("10 + 8 = 18")
    '18'
    >>> last_number("It is 1,234.5 metres") , last_number("no digits here")
    ('1234.5', None)
    """
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "").lstrip("+") if found else None


@functools.cache
def _score_fn(dataset: str) -> Callable[[str | None, dict[str, Any]], float]:
    """The dataset's ``score_answer``, built once per dataset name (it does not depend on size)."""
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(dataset)


class Verifier:
    """Score = ``score_answer(extract_answer(text), entry)`` of the task's reasoning-gym dataset.

    Usually 1.0 for a correct answer and 0.0 for a wrong one; some datasets give partial credit
    (``basic_arithmetic`` gives ``len(answer) / len(text)`` when the answer is inside a longer text).
    When the dataset's answer is a number, the last number of the extracted answer is scored too and
    the better of the two scores counts (``numbers=True``): "The final answer is -1." answers -1 and
    "10 + 8 = 18" answers 18, as GSM8K-style graders read them, while an answer the dataset's scorer
    already accepts keeps its score. The dataset name comes from ``metadata["dataset"]``, falling
    back to the entry's own ``metadata["source_dataset"]``.
    """

    name = "verifier"

    def __init__(self, marker: str = ANSWER_MARKER, numbers: bool = True) -> None:
        self.marker = marker
        self.numbers = numbers

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        out = []
        for i, c in enumerate(completions):
            entry, dataset = _entry_and_dataset(c.metadata, i)
            answer = extract_answer(c.text, self.marker)
            scorer = _score_fn(dataset)
            result = float(scorer(answer, entry) or 0.0)
            if self.numbers and result < 1.0 and _PLAIN_NUMBER.fullmatch(str(entry.get("answer", "")).strip()):
                number = last_number(answer)
                if number is not None:
                    result = max(result, float(scorer(number, entry) or 0.0))
            out.append(result)
        return out


def _entry_and_dataset(metadata: Mapping[str, Any], index: int) -> tuple[dict[str, Any], str]:
    entry = metadata.get("entry")
    if not isinstance(entry, Mapping):
        raise KeyError(
            f"completion {index}: the verifier needs metadata['entry'] (a reasoning-gym entry "
            f"dict with question/answer/metadata); metadata keys are {sorted(metadata)}"
        )
    dataset = metadata.get("dataset") or (entry.get("metadata") or {}).get("source_dataset")
    if not isinstance(dataset, str) or not dataset:
        raise KeyError(
            f"completion {index}: the verifier needs metadata['dataset'] (a reasoning-gym dataset "
            "name) or entry['metadata']['source_dataset']"
        )
    return dict(entry), dataset
