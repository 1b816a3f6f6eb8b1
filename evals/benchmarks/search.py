"""How often the built-in ``search`` tool finds a QA answer: the share of ``TextQA-v0`` questions whose
gold answer is in the top-k sentences a ranker returns for the question as the query, for the
TF-IDF variants the tool could use and, when the ``rank_bm25`` package is importable, BM25 (Okapi)
over the same sentences and tokens. A benchmark (it prints numbers side by side), not a test.

    python -m evals.benchmarks.search                  # train split, k = 1, 2, 3
    python -m evals.benchmarks.search --split test

The tool's row calls the tool's own ranker (its per-passage index cached, as in an env, so its
ms/query is not comparable with the others'). The question is the query as a demonstration writes it
(:func:`textenv.task_factories.qa`'s ``tool_calls``): Disfl-QA's questions keep their hesitations
("who, no, what...").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from textenv.cli import arg, cli, parse_config
from textenv.tools.search import rank_sentences, sentences

_WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern, for BM25 too


@dataclass(frozen=True)
class SearchBench:
    split: str = arg("train", "the TextQA-v0 split whose answerable questions are searched")
    top_k: tuple[int, ...] = arg((1, 2, 3), "hit rates at these k")


Ranker = Callable[[str, str], list[str]]
"""``(query, passage)`` -> the passage's sentences, best first."""


def _ordered(scores: Callable[[str, tuple[str, ...]], np.ndarray]) -> Ranker:
    def rank(query: str, passage: str) -> list[str]:
        found = sentences(passage)
        return [found[i] for i in np.argsort(-scores(query, found), kind="stable")]

    return rank


def _tool(query: str, passage: str) -> list[str]:
    """The ``search`` tool's own ranking (:func:`textenv.tools.search.rank_sentences`)."""
    return [s for _, s in rank_sentences(query, passage)]


def _tfidf(stop_words: str | None, sublinear: bool) -> Ranker:
    from sklearn.feature_extraction.text import TfidfVectorizer

    def scores(query: str, found: tuple[str, ...]) -> np.ndarray:
        vec = TfidfVectorizer(stop_words=stop_words, sublinear_tf=sublinear)
        try:
            matrix = vec.fit_transform(found)
        except ValueError:
            return np.zeros(len(found))
        return (matrix @ vec.transform([query]).T).toarray().ravel()

    return _ordered(scores)


def _bm25() -> Ranker | None:
    try:
        from rank_bm25 import BM25Okapi
    except ImportError:
        return None
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    def words(text: str) -> list[str]:
        return [w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]

    def scores(query: str, found: tuple[str, ...]) -> np.ndarray:
        return np.asarray(BM25Okapi([words(s) or ["_"] for s in found]).get_scores(words(query)))

    return _ordered(scores)


def main(argv: list[str] | None = None) -> None:
    from textenv.task_factories import qa

    bench = parse_config(SearchBench, argv, description=__doc__)
    examples = [ex for ex in qa().load(bench.split) if ex.metadata["answerable"]]
    rankers: dict[str, Ranker | None] = {
        "tfidf, English stop words, sublinear tf (the tool)": _tool,
        "tfidf, English stop words": _tfidf("english", False),
        "tfidf, no stop words": _tfidf(None, False),
        "bm25 (rank_bm25 Okapi, same tokens)": _bm25(),
    }
    print(f"{len(examples)} answerable {bench.split} questions; hit@k: the answer is in the top k sentences")
    print(f"{'ranker':52s} " + " ".join(f"hit@{k:<4d}" for k in bench.top_k) + "  ms/query")
    for name, rank in rankers.items():
        if rank is None:
            print(f"{name:52s} (not installed: pip install rank_bm25)")
            continue
        hits = np.zeros(len(bench.top_k))
        start = time.perf_counter()
        for ex in examples:
            ranked = rank(ex.metadata["question"], ex.metadata["passage"])
            answer = ex.references[0]
            for j, k in enumerate(bench.top_k):
                hits[j] += any(answer in s for s in ranked[:k])
        ms = 1000 * (time.perf_counter() - start) / len(examples)
        print(f"{name:52s} " + " ".join(f"{h / len(examples):<8.3f}" for h in hits) + f"  {ms:.2f}")


if __name__ == "__main__":
    cli(main)
