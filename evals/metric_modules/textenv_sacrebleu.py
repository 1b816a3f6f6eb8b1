"""Corpus BLEU or chrF plus per-example sentence scores for textenv, as one local ``evaluate``
module over sacrebleu; the metric is the module's ``config_name`` (``"bleu"`` or ``"chrf"``).

Why our own module: the Hub's ``sacrebleu`` and ``chrf`` metrics need network access to load and
return only the corpus score; the suite also needs per-example scores to bootstrap confidence
intervals.

Why the odd layout: ``evaluate`` copies this file alone into its module cache and scans it line by
line for imports (one import per line, no imports from the project), then instantiates the first
``EvaluationModule`` subclass it finds, so only the module ``evaluate`` is imported, never its classes.

Scale: 0-100, as sacrebleu reports it. Higher is better. The corpus score is NOT the mean of
``sentence_scores``: both metrics pool n-gram statistics over the corpus, and sentence BLEU uses
effective-order smoothing so short sentences are not all zero. Bootstrap the sentence scores for an
interval, report the corpus score as the point estimate.
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU, CHRF

_DESCRIPTION = "sacrebleu BLEU or chrF (0-100): corpus score plus per-example sentence scores."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list[str], one generated text per example.
    references: list[list[str]] (a variable number of references per example is fine) or list[str].
    lowercase: case-insensitive matching (default False).
    BLEU only: tokenize: sacrebleu tokenizer name (default "13a", sacrebleu's default).
    chrF only: char_order (default 6), word_order (default 0 = chrF; 2 = chrF++), beta (default 2).
Returns:
    {"bleu" or "chrf": float, "sentence_scores": list[float], "signature": str}, scores in [0, 100].
    Higher is better.
"""

_CITATION = (
    "Post, M. (2018). A Call for Clarity in Reporting BLEU Scores. "
    "Popovic, M. (2015). chrF: character n-gram F-score for automatic MT evaluation."
)

_CONFIGS = ("bleu", "chrf")


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


class TextenvSacrebleu(evaluate.Metric):
    """sacrebleu BLEU or chrF (``config_name``): corpus score and per-example sentence scores."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _CONFIGS:
            raise ValueError(f"config_name must be one of {_CONFIGS}, got {self.config_name!r}")
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

    def _compute(self, predictions: list[str], references: list, lowercase: bool = False, **options) -> dict:
        """``options``: BLEU's ``tokenize``, or chrF's ``char_order``, ``word_order``, ``beta``."""
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions but {len(references)} references; expected equal")
        refs = _as_reference_lists(references)
        if self.config_name == "bleu":
            corpus = BLEU(lowercase=lowercase, **options)
            # effective_order=True is what sacrebleu.sentence_bleu uses: without it most short sentences score 0.
            sentence = BLEU(lowercase=lowercase, effective_order=True, **options)
        else:
            corpus = sentence = CHRF(lowercase=lowercase, **options)
        score = corpus.corpus_score(list(predictions), _reference_streams(refs))
        return {
            self.config_name: float(score.score),
            "sentence_scores": [
                float(sentence.sentence_score(p, r).score) for p, r in zip(predictions, refs, strict=True)
            ],
            "signature": str(corpus.get_signature()),
        }
