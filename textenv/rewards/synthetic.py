"""The reward of the synthetic counting task (``TextCount-v0``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from textenv.rewards.base import Completion

__all__ = ["IncreasingNumbers"]

_INT = re.compile(r"-?\d+")


class IncreasingNumbers:
    """Fraction of ``target_pairs`` adjacent integer pairs in the completion that strictly increase.

    ``"10 11 12"`` has two increasing pairs; with ``target_pairs=4`` it scores 0.5. Capped at 1.
    ``target_pairs`` comes from the completion's metadata when present (the task sets it), else
    from the constructor. Dense enough that a random policy gets a signal from emitting numbers.

    >>> IncreasingNumbers(target_pairs=4)([Completion(prompt="Count: 7 8 9", text=" 10 11 12")])
    [0.5]
    """

    name = "increasing"

    def __init__(self, target_pairs: int = 6) -> None:
        if target_pairs < 1:
            raise ValueError(f"target_pairs must be >= 1, got {target_pairs}")
        self.target_pairs = target_pairs

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        out = []
        for c in completions:
            nums = [int(x) for x in _INT.findall(c.text)]
            up = sum(b > a for a, b in zip(nums, nums[1:], strict=False))
            target = int(c.metadata.get("target_pairs", self.target_pairs))
            out.append(min(1.0, up / target))
        return out
