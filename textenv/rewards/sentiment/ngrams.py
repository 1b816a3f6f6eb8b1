"""A hashed word n-gram linear classifier (fastText-style), for short noisy texts such as tweets.

Sentence embeddings blur the cues that decide a tweet's sentiment — a hashtag, an emoticon, "not
bad", a misspelling; a bag of word uni- and bigrams keeps them. The two make complementary errors,
so :mod:`textenv.rewards.sentiment.classifier` averages this model's probabilities with the MiniLM head's.

Features are hashed into a fixed number of buckets (``zlib.crc32``: the same ids in every process
and on every machine, unlike Python's salted ``hash``), so there is no vocabulary to store; the
model is one ``EmbeddingBag`` whose rows are per-class weights — multinomial logistic regression
on the mean of the n-gram indicators.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["NgramClassifier", "ngram_ids", "train_ngram_classifier"]

_TOKEN = re.compile(r"[a-z0-9']+|[#@]\w+|[:;=x][-']?[()dp/\\|]|[!?]+|[^\s\w]")
"""Words (apostrophes kept: "don't"), hashtags and mentions, common ASCII emoticons, runs of !/?,
and any other symbol (emoji included) as its own token."""


def ngram_ids(text: str, buckets: int, n: int = 2) -> list[int]:
    """Bucket ids of the lower-cased word 1..n-grams of ``text`` (a ``<s>`` marker for empty text)."""
    tokens = _TOKEN.findall(text.lower()) or ["<s>"]
    grams = [" ".join(tokens[i:i + k]) for k in range(1, n + 1) for i in range(len(tokens) - k + 1)]
    return [zlib.crc32(g.encode("utf-8")) % buckets for g in grams]


class NgramClassifier(nn.Module):
    """Logits = mean of per-n-gram class weights + a bias."""

    def __init__(self, buckets: int, n_classes: int, n: int = 2) -> None:
        super().__init__()
        self.buckets, self.n = buckets, n
        self.weights = nn.EmbeddingBag(buckets, n_classes, mode="mean")
        nn.init.zeros_(self.weights.weight)
        self.bias = nn.Parameter(torch.zeros(n_classes))

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat bucket ids and the offset of each text in them (``EmbeddingBag``'s input)."""
        ids = [ngram_ids(t, self.buckets, self.n) for t in texts]
        offsets = np.cumsum([0] + [len(i) for i in ids[:-1]])
        return torch.tensor([x for i in ids for x in i], dtype=torch.long), torch.as_tensor(offsets)

    def forward(self, flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.weights(flat, offsets) + self.bias

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.bias.numel()), dtype=np.float32)
        return torch.softmax(self(*self.encode(texts)), -1).numpy()


def train_ngram_classifier(texts: Sequence[str], labels: Sequence[int], n_classes: int, buckets: int = 2**20,
                           n: int = 2, epochs: int = 5, lr: float = 0.5, batch_size: int = 64,
                           seed: int = 0) -> NgramClassifier:
    """Fit with Adagrad (the sparse-friendly optimiser fastText-style models use); same seed, same model."""
    if len(texts) != len(labels) or not texts:
        raise ValueError(f"need as many labels as texts (and at least one), got {len(texts)} and {len(labels)}")
    model = NgramClassifier(buckets, n_classes, n)
    ids = [ngram_ids(t, buckets, n) for t in texts]
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.Adagrad(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(ids), generator=gen).split(batch_size):
            rows = [ids[i] for i in batch.tolist()]
            offsets = torch.as_tensor(np.cumsum([0] + [len(r) for r in rows[:-1]]))
            flat = torch.tensor([x for r in rows for x in r], dtype=torch.long)
            loss = nn.functional.cross_entropy(model(flat, offsets), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
