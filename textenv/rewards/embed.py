"""Semantic-similarity rewards from MiniLM: sentence cosine and BERTScore-style token matching.

Both reward paraphrases that ROUGE misses. Each batch is embedded in as few model calls as
possible: every distinct completion and reference string of the batch goes through MiniLM once.
``textenv.minilm`` (and so torch) is imported inside the calls, keeping ``textenv.rewards`` cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from textenv.rewards.base import Completion

__all__ = ["EmbeddingSimilarity", "BertScore", "Relevance"]


def _distinct_strings(completions: Sequence[Completion],
                      targets: Callable[[Completion], Sequence[str]] = lambda c: c.references) -> list[str]:
    """Every non-empty text and target (by default the references) of the batch, once each, in
    first-seen order."""
    seen: dict[str, None] = {}
    for c in completions:
        if c.text.strip() and targets(c):
            seen.setdefault(c.text, None)
            for ref in targets(c):
                if ref.strip():
                    seen.setdefault(ref, None)
    return list(seen)


class EmbeddingSimilarity:
    """Cosine similarity of MiniLM sentence embeddings, best over the references, in [-1, 1].

    0.0 for an empty completion or one without (non-empty) references.
    """

    name = "embedding"

    def __init__(self, batch_size: int = 64, max_length: int = 256) -> None:
        self.batch_size = batch_size
        self.max_length = max_length

    def _targets(self, c: Completion) -> tuple[str, ...]:
        return c.references

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        from textenv.minilm import embed_texts

        strings = _distinct_strings(completions, self._targets)
        if not strings:
            return [0.0] * len(completions)
        vectors = embed_texts(strings, batch_size=self.batch_size, max_length=self.max_length)
        index = {s: i for i, s in enumerate(strings)}
        out = []
        for c in completions:
            refs = [index[r] for r in self._targets(c) if r in index]
            if c.text not in index or not refs:
                out.append(0.0)
                continue
            # embed_texts is L2-normalised, so the dot product is the cosine.
            out.append(float(np.max(vectors[refs] @ vectors[index[c.text]])))
        return out


class Relevance(EmbeddingSimilarity):
    """Cosine similarity of MiniLM sentence embeddings between a reply and the turn it answers
    (``metadata["user"]``, which the dialogue env sets per turn), in [-1, 1]: a reply about what
    was said scores above a generic one ("lol ok"), with no reference reply needed. 0.0 for an
    empty reply or a completion without ``metadata["user"]``."""

    name = "relevance"

    def _targets(self, c: Completion) -> tuple[str, ...]:
        user = c.metadata.get("user")
        return (user,) if isinstance(user, str) and user.strip() else ()


class BertScore:
    """BERTScore F1 with MiniLM token embeddings, best over the references, in [-1, 1].

    Zhang et al. 2020 (arXiv:1904.09675) greedy matching, without idf weighting or baseline
    rescaling: drop [CLS]/[SEP]/padding, take the cosine matrix between candidate and reference
    tokens, ``P`` = mean over candidate tokens of their best match, ``R`` = mean over reference
    tokens of theirs, ``F1 = 2PR / (P + R)``. 0.0 for empty text or no references.
    """

    name = "bertscore"

    def __init__(self, batch_size: int = 32, max_length: int = 256) -> None:
        self.batch_size = batch_size
        self.max_length = max_length

    def _token_vectors(self, strings: list[str]) -> dict[str, np.ndarray]:
        """Unit-norm embeddings of each string's real tokens, shape ``(tokens, 384)``."""
        import torch

        from textenv.minilm import load_minilm, token_embeddings

        tokenizer, _ = load_minilm()
        special = torch.tensor(sorted(tokenizer.all_special_ids))
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(strings), self.batch_size):
            chunk = strings[start : start + self.batch_size]
            hidden, mask, ids = token_embeddings(chunk, self.max_length)
            keep = mask.bool() & ~torch.isin(ids, special)
            hidden = torch.nn.functional.normalize(hidden, dim=-1)
            for row, s in enumerate(chunk):
                out[s] = hidden[row][keep[row]].numpy()
        return out

    def __call__(self, completions: Sequence[Completion]) -> list[float]:
        strings = _distinct_strings(completions)
        vectors = self._token_vectors(strings) if strings else {}
        out = []
        for c in completions:
            cand = vectors.get(c.text)
            refs = [vectors[r] for r in c.references if r in vectors]
            if cand is None or len(cand) == 0:
                out.append(0.0)
                continue
            out.append(max((_f1(cand, ref) for ref in refs if len(ref)), default=0.0))
        return out


def _f1(cand: np.ndarray, ref: np.ndarray) -> float:
    sim = cand @ ref.T
    precision = float(sim.max(axis=1).mean())
    recall = float(sim.max(axis=0).mean())
    if precision + recall <= 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)
