"""The Chit-Chat Challenge corpus: 7,168 real two-person text conversations (MIT licence).

The PyPI package ``chitchat-dataset`` ships ``chitchat_dataset/dataset.json``: conversation id ->
``{"messages": [[{"text", "sender", "timestamp"}, ...], ...], "prompt", "ratings", "start"}``, where
each inner list is one *turn* (consecutive messages of one sender). We read the file directly (found
with ``importlib.util.find_spec``), join a turn's messages with a space, and split the conversations
80 / 10 / 10 by a seeded permutation of their ids (the file has no splits).

>>> convs = load_conversations()
>>> len(convs), convs[0].turns[:2]
(7168, ('Hello How are you doing today?', 'whats up MD im doing good how are you doing?'))
>>> {s: len(split_conversations(convs, s)) for s in SPLITS}
{'train': 5734, 'validation': 717, 'test': 717}
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textenv.cache import package_dir

__all__ = ["SPLITS", "Conversation", "corpus_path", "load_conversations", "split_conversations"]

SPLITS: dict[str, tuple[float, float]] = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
"""Each split's [start, end) fraction of the seeded permutation of the conversation ids."""


@dataclass(frozen=True)
class Conversation:
    """One conversation: its id and its turns, alternating between the two people (first speaker first)."""

    id: str
    turns: tuple[str, ...]


def corpus_path() -> Path:
    """``dataset.json`` inside the installed ``chitchat-dataset`` package (a clear error when missing)."""
    path = package_dir("chitchat_dataset", "TextDialogue's data", "chitchat-dataset==0.9.0") / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall chitchat-dataset==0.9.0")
    return path


@functools.cache
def load_conversations() -> tuple[Conversation, ...]:
    """Every conversation in file order; a turn is its messages joined by a space, whitespace collapsed."""
    with corpus_path().open(encoding="utf-8") as f:
        data = json.load(f)
    return tuple(Conversation(cid, tuple(" ".join(" ".join(m["text"] for m in turn).split())
                                         for turn in conv["messages"]))
                 for cid, conv in data.items())


def split_conversations(convs: tuple[Conversation, ...], split: str, seed: int = 0) -> list[Conversation]:
    """The conversations in ``split`` of a seeded permutation of all of them, in file order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLITS)}")
    order = np.random.default_rng(seed).permutation(len(convs))
    lo, hi = SPLITS[split]
    mine = set(order[int(lo * len(convs)):int(hi * len(convs))].tolist())
    return [c for i, c in enumerate(convs) if i in mine]
