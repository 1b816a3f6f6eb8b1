"""Undo whitespace tokenisation, for corpora shipped as tokens joined by spaces (aclsum, Disfl-QA)."""

from __future__ import annotations

import re

__all__ = ["detokenize"]


def detokenize(text: str) -> str:
    """Rejoin what a tokenizer split: apostrophes (``"Earth ' s"``, ``"word 's"``, ``"do n't"``),
    punctuation and brackets, then collapse whitespace.

    >>> detokenize("the Earth ' s atmosphere ( see Occurrence ) , in 1953 .")
    "the Earth's atmosphere (see Occurrence), in 1953."
    >>> detokenize("it 's a model that does n't [ fail ] ; 90 % of it")
    "it's a model that doesn't [fail]; 90% of it"
    """
    text = re.sub(r" ' (s|t|re|ve|ll|d|m)\b", r"'\1", text)
    text = re.sub(r" ([.,;:!?%)\]])", r"\1", text)
    text = re.sub(r"([(\[]) ", r"\1", text)
    text = text.replace(" 's", "'s").replace(" n't", "n't")
    return re.sub(r"\s+", " ", text).strip()
