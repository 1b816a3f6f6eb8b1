"""SQuAD exact match and token F1 for textenv, as a local ``evaluate`` module.

Why our own module: ``evaluate.load("squad")`` fetches a script from the Hub and wants SQuAD's
nested ``{"id", "answers": {"text", "answer_start"}}`` records; the suite runs offline and needs
per-example scores to bootstrap confidence intervals.

Why it imports the project: the scores must be the env's own reward definitions
(``textenv.rewards.qa``), so training and the leaderboard cannot disagree. ``evaluate`` copies this
file alone into its cache and checks each imported top-level package is installed; ``textenv`` is.

Scores are in [0, 1] (the official script reports 0-100), best over the references. Higher is better.
"""

import datasets
import evaluate

from textenv.rewards.qa import best_over, exact_match, token_f1

_DESCRIPTION = "SQuAD exact match and token F1 (normalised answers, best over references), in [0, 1]."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list[str], one answer per example.
    references: list[list[str]] (one or more acceptable answers per example) or list[str].
    use_aggregator: True (default) returns the means; False per-example lists (for bootstrap CIs).
Returns:
    {"exact_match": ..., "f1": ...}: floats in [0, 1] or lists of them. Higher is better.
"""

_CITATION = "Rajpurkar, P. et al. (2016). SQuAD: 100,000+ Questions for Machine Comprehension of Text."


class TextenvSquad(evaluate.Metric):
    """Exact match and token F1, aggregated (mean) or per example."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            codebase_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions: list[str], references: list, use_aggregator: bool = True) -> dict:
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions but {len(references)} references; expected equal")
        refs = [[r] if isinstance(r, str) else list(r) for r in references]
        per_example = {
            "exact_match": [best_over(exact_match, p, r) for p, r in zip(predictions, refs, strict=True)],
            "f1": [best_over(token_f1, p, r) for p, r in zip(predictions, refs, strict=True)],
        }
        if not use_aggregator:
            return per_example
        return {k: (sum(v) / len(v) if v else 0.0) for k, v in per_example.items()}
