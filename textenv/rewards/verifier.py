"""A verifiable reward for reasoning-gym tasks: the dataset's own ``score_answer``.

The env puts the reasoning-gym entry (question, answer, metadata) in ``metadata["entry"]`` and the
dataset name in ``metadata["dataset"]``; the dataset's scorer knows the task's notion of a correct
answer (numeric tolerance, set equality, partial credit), so we never reimplement it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from textenv.rewards.base import Completion

__all__ = ["Verifier", "extract_answer"]

ANSWER_MARKER = "Answer:"


def extract_answer(text: str, marker: str = ANSWER_MARKER) -> str:
    """The answer part of a completion: what follows the last ``marker``, else the first line.

    Everything after the marker is kept (stripped), because some tasks have multi-line answers
    (grids); without a marker only the first line counts, so trailing chatter is not scored.

    >>> extract_answer("I think so.\\nAnswer: 42")
    '42'
    >>> extract_answer("  42\\nbecause 6*7")
    '42'
    """
    text = text.strip()
    if marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text.split("\n", 1)[0].strip()


@functools.cache
def _score_fn(dataset: str) -> Callable[[str | None, dict[str, Any]], float]:
    """The dataset's ``score_answer``, built once per dataset name (it does not depend on size)."""
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(dataset)


class Verifier:
    """Score = ``score_answer(extract_answer(text), entry)`` of the task's reasoning-gym dataset.

    Usually 1.0 for a correct answer and 0.0 for a wrong one; some datasets give partial credit.
    The dataset name comes from ``metadata["dataset"]``, falling back to the entry's own
    ``metadata["source_dataset"]``.
    """

    name = "verifier"

    def __init__(self, marker: str = ANSWER_MARKER) -> None:
        self.marker = marker

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        out = []
        for i, c in enumerate(completions):
            entry, dataset = _entry_and_dataset(c.metadata, i)
            answer = extract_answer(c.text, self.marker)
            result = _score_fn(dataset)(answer, entry)
            out.append(float(result) if result is not None else 0.0)
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
