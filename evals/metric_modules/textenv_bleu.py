"""Corpus BLEU plus per-example sentence BLEU for textenv, as a local ``evaluate`` module (sacrebleu).

Why our own module: the Hub's ``sacrebleu`` metric needs network access to load and returns only the
corpus score; the suite also needs per-example scores to bootstrap confidence intervals.

Why the odd layout: ``evaluate`` copies this file alone into its module cache and scans it line by
line for imports (one import per line, no imports from the project), then instantiates the first
``EvaluationModule`` subclass it finds, so only the module ``evaluate`` is imported, never its classes.

Scale: 0-100, as sacrebleu reports it. Higher is better. Note that the corpus score is NOT the mean
of ``sentence_scores`` (BLEU pools n-gram counts over the corpus; sentence BLEU uses effective-order
smoothing so short sentences are not all zero). Bootstrap the sentence scores for an interval, report
the corpus score as the point estimate.
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU

_DESCRIPTION = "sacrebleu BLEU (0-100): corpus score plus per-example sentence scores."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list[str], one generated text per example.
    references: list[list[str]] (a variable number of references per example is fine) or list[str].
    tokenize: sacrebleu tokenizer name (default "13a", sacrebleu's default).
    lowercase: case-insensitive matching (default False).
Returns:
    {"bleu": float, "sentence_scores": list[float], "signature": str}, scores in [0, 100].
    Higher is better.
"""

_CITATION = "Post, M. (2018). A Call for Clarity in Reporting BLEU Scores."


def _as_reference_lists(references: list) -> list[list[str]]:
    """Accept one string or a list of strings per example; always hand back lists."""
    out = []
    for i, refs in enumerate(references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError(f"example {i} has no references; expected at least one string")
        out.append(refs)
    return out


def _reference_streams(refs_per_example: list[list[str]]) -> list[list[str | None]]:
    """Transpose to sacrebleu's layout (one stream per reference slot), padding with None.

    sacrebleu skips None entries, which is how it supports a variable number of references.
    """
    n_slots = max(len(r) for r in refs_per_example)
    return [[r[k] if k < len(r) else None for r in refs_per_example] for k in range(n_slots)]


class TextenvBleu(evaluate.Metric):
    """sacrebleu BLEU: corpus score and per-example sentence scores."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(
        self, predictions: list[str], references: list, tokenize: str | None = None, lowercase: bool = False
    ) -> dict:
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions but {len(references)} references; expected equal")
        refs = _as_reference_lists(references)
        corpus = BLEU(tokenize=tokenize, lowercase=lowercase)
        # effective_order=True is what sacrebleu.sentence_bleu uses: without it most short sentences score 0.
        sentence = BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=True)
        score = corpus.corpus_score(list(predictions), _reference_streams(refs))
        return {
            "bleu": float(score.score),
            "sentence_scores": [
                float(sentence.sentence_score(p, r).score) for p, r in zip(predictions, refs, strict=True)
            ],
            "signature": str(corpus.get_signature()),
        }
