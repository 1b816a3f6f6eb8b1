"""Reference- and text-based rewards: ROUGE, BLEU, chrF, length, repetition, keywords.

Each reward is a small class with a ``name`` (the key it is logged under) and a batched
``__call__(completions) -> list[float]``. Heavy scorers (``rouge_score`` pulls in nltk, ~4 s) are
imported in the constructor, never at module import, so ``import textenv.rewards`` stays cheap.

Reference-based rewards take the best score over ``Completion.references`` (any acceptable answer
counts) and give 0.0 to an empty completion or one without references.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from textenv.rewards.base import Completion

__all__ = [
    "Rouge",
    "Rouge1",
    "Rouge2",
    "RougeL",
    "Bleu",
    "Chrf",
    "LengthPenalty",
    "RepetitionPenalty",
    "Keyword",
]

_ROUGE_KINDS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class Rouge:
    """ROUGE F-measure (``rouge_score``), best over the references.

    >>> Rouge("rouge1")([Completion("", "the cat sat", references=("the cat sat",))])
    [1.0]
    """

    def __init__(self, kind: str = "rougeL", use_stemmer: bool = True) -> None:
        if kind not in _ROUGE_KINDS:
            raise ValueError(f"unknown ROUGE kind {kind!r}; expected one of {_ROUGE_KINDS}")
        from rouge_score.rouge_scorer import RougeScorer

        self.name = kind
        self.kind = kind
        self._scorer = RougeScorer([kind], use_stemmer=use_stemmer)

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        out = []
        for c in completions:
            if not c.text.strip() or not c.references:
                out.append(0.0)
                continue
            # rouge_score's argument order is (target, prediction).
            out.append(
                max(self._scorer.score(ref, c.text)[self.kind].fmeasure for ref in c.references)
            )
        return out


class Rouge1(Rouge):
    """ROUGE-1 F (unigram overlap); a table entry needs one class per kind."""

    def __init__(self, use_stemmer: bool = True) -> None:
        super().__init__("rouge1", use_stemmer)


class Rouge2(Rouge):
    """ROUGE-2 F (bigram overlap)."""

    def __init__(self, use_stemmer: bool = True) -> None:
        super().__init__("rouge2", use_stemmer)


class RougeL(Rouge):
    """ROUGE-L F (longest common subsequence)."""

    def __init__(self, use_stemmer: bool = True) -> None:
        super().__init__("rougeL", use_stemmer)


class Bleu:
    """Sentence-level BLEU (sacrebleu defaults, exp smoothing), multi-reference, in [0, 1]."""

    name = "bleu"

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        from sacrebleu import sentence_bleu

        return [
            _unit(sentence_bleu(c.text, list(c.references)).score)
            if c.text.strip() and c.references
            else 0.0
            for c in completions
        ]


class Chrf:
    """Sentence-level chrF (sacrebleu defaults), multi-reference, in [0, 1]."""

    name = "chrf"

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        from sacrebleu import sentence_chrf

        return [
            _unit(sentence_chrf(c.text, list(c.references)).score)
            if c.text.strip() and c.references
            else 0.0
            for c in completions
        ]


def _unit(score: float) -> float:
    # sacrebleu reports 0..100 and identical sentences can come out as 100.00000000000004.
    return min(1.0, max(0.0, score / 100.0))


class LengthPenalty:
    """A penalty in ``[-(1 + eos_penalty), 0]``; 0 means "ended properly, right length".

    With ``n`` the number of whitespace-separated words of ``text``::

        excess  = max(0, |n - target| - tolerance)
        penalty = -min(1, excess / scale) - eos_penalty * (not ended_with_eos)

    ``scale`` defaults to ``target`` (so missing the target by 100% or more costs the full 1).
    ``target=None`` keeps only the EOS term: a completion cut off by the length limit rambled.

    >>> LengthPenalty(target=4)([Completion("", "a b", ended_with_eos=False)])
    [-1.5]
    """

    name = "length"

    def __init__(
        self,
        target: int | None = None,
        tolerance: int = 0,
        scale: float | None = None,
        eos_penalty: float = 1.0,
    ) -> None:
        if target is not None and target <= 0:
            raise ValueError(f"target must be a positive number of words, got {target!r}")
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        if scale is not None and scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if eos_penalty < 0:
            raise ValueError(f"eos_penalty must be >= 0, got {eos_penalty!r}")
        self.target = target
        self.tolerance = tolerance
        self.scale = float(scale if scale is not None else (target or 1))
        self.eos_penalty = float(eos_penalty)

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        out = []
        for c in completions:
            penalty = 0.0 if c.ended_with_eos else -self.eos_penalty
            if self.target is not None:
                excess = max(0, abs(len(c.text.split()) - self.target) - self.tolerance)
                penalty -= min(1.0, excess / self.scale)
            out.append(penalty)
        return out


class RepetitionPenalty:
    """Minus the fraction of repeated word n-grams, in ``(-1, 0]``; 0 means no repetition.

    With the lower-cased word n-grams of ``text`` (``total`` of them, ``unique`` distinct)::

        penalty = -(total - unique) / total      (0 when the text has fewer than n words)

    "a b a b a b" with n=2 has 5 bigrams, 2 distinct: -3/5. Catches the degenerate loops that
    policy-gradient fine-tuning finds when a reference metric rewards a frequent phrase.
    """

    name = "repetition"

    def __init__(self, n: int = 3) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        self.n = n

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        out = []
        for c in completions:
            words = c.text.lower().split()
            grams = [tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1)]
            out.append(-(len(grams) - len(set(grams))) / len(grams) if grams else 0.0)
        return out


class Keyword:
    """Fraction of keywords present in the text, in ``[0, 1]``; case-insensitive whole words.

    A keyword may be a phrase ("new york"); it matches only between non-word characters, so "cat"
    does not match "concatenate". Without ``keywords`` each completion's
    ``metadata["keywords"]`` is used (tasks where every prompt asks for different words).
    """

    name = "keyword"

    def __init__(self, keywords: Sequence[str] | None = None) -> None:
        if isinstance(keywords, str):
            raise TypeError(f"keywords must be a sequence of strings, got the string {keywords!r}")
        if keywords is not None and not keywords:
            raise ValueError("keywords is empty; pass None to read metadata['keywords']")
        self.keywords = None if keywords is None else tuple(keywords)

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        out = []
        for c in completions:
            keywords = self.keywords
            if keywords is None:
                if "keywords" not in c.metadata:
                    raise KeyError(
                        "Keyword reward has no keywords: pass keywords=[...] or set "
                        f"metadata['keywords'] (metadata keys: {sorted(c.metadata)})"
                    )
                keywords = tuple(c.metadata["keywords"])
            if not keywords:
                out.append(0.0)
                continue
            text = c.text.lower()
            hits = sum(_contains_word(text, k.lower()) for k in keywords)
            out.append(hits / len(keywords))
        return out


def _contains_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", text) is not None
