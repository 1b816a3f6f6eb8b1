"""Corpus chrF plus per-example sentence chrF for textenv, as a local ``evaluate`` module (sacrebleu).

Why our own module: the Hub's ``chrf`` metric needs network access to load and returns only the corpus
score; the suite also needs per-example scores to bootstrap confidence intervals.

Why the odd layout: ``evaluate`` copies this file alone into its module cache and scans it line by
line for imports (one import per line, no imports from the project), then instantiates the first
``EvaluationModule`` subclass it finds, so only the module ``evaluate`` is imported, never its classes.

Scale: 0-100, as sacrebleu reports it. Higher is better. The corpus score pools character n-gram
statistics over all examples, so it is not the mean of ``sentence_scores``.
"""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_DESCRIPTION = "sacrebleu chrF (0-100; chrF++ with word_order=2): corpus score plus per-example sentence scores."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list[str], one generated text per example.
    references: list[list[str]] (a variable number of references per example is fine) or list[str].
    char_order: character n-gram order (default 6).
    word_order: word n-gram order (default 0 = chrF; 2 = chrF++).
    beta: recall weight (default 2).
    lowercase: case-insensitive matching (default False).
Returns:
    {"chrf": float, "sentence_scores": list[float], "signature": str}, scores in [0, 100].
    Higher is better.
"""

_CITATION = "Popovic, M. (2015). chrF: character n-gram F-score for automatic MT evaluation."


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


class TextenvChrf(evaluate.Metric):
    """sacrebleu chrF: corpus score and per-example sentence scores."""

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
        self,
        predictions: list[str],
        references: list,
        char_order: int = 6,
        word_order: int = 0,
        beta: int = 2,
        lowercase: bool = False,
    ) -> dict:
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions but {len(references)} references; expected equal")
        refs = _as_reference_lists(references)
        chrf = CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase)
        score = chrf.corpus_score(list(predictions), _reference_streams(refs))
        return {
            "chrf": float(score.score),
            "sentence_scores": [float(chrf.sentence_score(p, r).score) for p, r in zip(predictions, refs, strict=True)],
            "signature": str(chrf.get_signature()),
        }
