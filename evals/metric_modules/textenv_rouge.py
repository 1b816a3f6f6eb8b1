"""ROUGE-1/2/L F-measure for textenv, as a local ``evaluate`` module.

Why our own module: ``evaluate.load("rouge")`` fetches a script from the Hub, and the eval suite must
run offline and reproducibly, so this file is loaded by path (``evals.metrics.load_metric("rouge")``).

Why the odd layout: ``evaluate`` copies this file alone into its module cache and scans it line by
line for imports (one import per line, no imports from the project), then instantiates the first
``EvaluationModule`` subclass it finds, so only the module ``evaluate`` is imported, never its classes.

Scores are F-measures in [0, 1] from ``rouge_score`` with the Porter stemmer; with several references
per example each ROUGE type takes its maximum over them (the usual multi-reference convention).
Higher is better.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-1/2/L F-measure (rouge_score, Porter stemmer), max over references."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list[str], one generated text per example.
    references: list[list[str]] (one or more references per example) or list[str] (exactly one).
    use_aggregator: True (default) returns the mean over examples per ROUGE type; False returns
        per-example lists, which is what bootstrap confidence intervals need.
    use_stemmer: Porter-stem tokens before matching (default True).
Returns:
    {"rouge1": ..., "rouge2": ..., "rougeL": ...}: floats in [0, 1] or lists of them. Higher is better.
"""

_CITATION = "Lin, C.-Y. (2004). ROUGE: A Package for Automatic Evaluation of Summaries."

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _as_reference_lists(references: list) -> list[list[str]]:
    """Accept one string or a list of strings per example; always hand back lists."""
    out = []
    for i, refs in enumerate(references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError(f"example {i} has no references; expected at least one string")
        out.append(refs)
    return out


class TextenvRouge(evaluate.Metric):
    """ROUGE F-measures, aggregated (mean) or per example."""

    def _info(self) -> evaluate.MetricInfo:
        # Two feature layouts so both ``list[list[str]]`` and ``list[str]`` references are accepted.
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
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(
        self, predictions: list[str], references: list, use_aggregator: bool = True, use_stemmer: bool = True
    ) -> dict:
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions but {len(references)} references; expected equal")
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
        per_example: dict[str, list[float]] = {t: [] for t in ROUGE_TYPES}
        for pred, refs in zip(predictions, _as_reference_lists(references), strict=True):
            scores = [scorer.score(ref, pred) for ref in refs]  # rouge_score takes (target, prediction)
            for t in ROUGE_TYPES:
                per_example[t].append(max(float(s[t].fmeasure) for s in scores))
        if not use_aggregator:
            return per_example
        return {t: (sum(v) / len(v) if v else 0.0) for t, v in per_example.items()}
