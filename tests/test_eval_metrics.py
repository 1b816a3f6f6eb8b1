"""Eval-suite metric maths and our local ``evaluate`` modules, checked against the libraries they wrap.

The local modules must agree exactly with ``rouge_score`` / ``sacrebleu`` called directly: they exist
only to load offline by path and to return per-example scores, never to change the numbers.
"""


import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from evals.metrics import (
    DEFAULT_TASK_METRICS,
    METRICS,
    N_GRAM_METRICS,
    UNRANKED,
    TaskMetrics,
    bootstrap_ci,
    delta_of,
    distinct_n,
    higher_is_better,
    is_metric,
    kl_per_token,
    load_metric,
    per_example_lengths,
    per_prompt_means,
    prompt_means,
    task_metrics,
    win_rate_values,
)

PREDICTIONS = [
    "the cat sat on the mat",
    "a quick brown fox jumps over the lazy dogs",
    "running runners ran quickly",
    "completely unrelated words here",
]
REFERENCES = [
    ["the cat was sitting on the mat", "a cat sat on a mat"],
    ["the quick brown fox jumped over the lazy dog"],
    ["the runner runs quick", "runners were running", "nothing"],
    ["the cat sat on the mat"],
]
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _streams(refs: list[list[str]]) -> list[list[str | None]]:
    """sacrebleu's reference layout, padded with None for a variable number of references."""
    k = max(map(len, refs))
    return [[r[i] if i < len(r) else None for r in refs] for i in range(k)]


# --- local evaluate modules ---------------------------------------------------------------------------


def test_rouge_module_matches_rouge_score_exactly() -> None:
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    expected = {
        t: [max(scorer.score(r, p)[t].fmeasure for r in refs) for p, refs in zip(PREDICTIONS, REFERENCES, strict=True)]
        for t in ROUGE_TYPES
    }
    # Cross-check the multi-reference convention with rouge_score's own max-over-targets.
    for i, (p, refs) in enumerate(zip(PREDICTIONS, REFERENCES, strict=True)):
        multi = scorer.score_multi(refs, p)
        for t in ROUGE_TYPES:
            assert expected[t][i] == multi[t].fmeasure

    rouge = load_metric("rouge")
    per_example = rouge.compute(predictions=PREDICTIONS, references=REFERENCES, use_aggregator=False)
    assert per_example == expected
    assert per_example["rouge1"][0] > 0.0 and per_example["rouge2"][3] < per_example["rouge1"][0]
    aggregated = rouge.compute(predictions=PREDICTIONS, references=REFERENCES)
    for t in ROUGE_TYPES:
        assert aggregated[t] == pytest.approx(float(np.mean(expected[t])), abs=1e-12)


def test_rouge_module_accepts_flat_references() -> None:
    rouge = load_metric("rouge")
    flat = [refs[0] for refs in REFERENCES]
    nested = [[r] for r in flat]
    a = rouge.compute(predictions=PREDICTIONS, references=flat, use_aggregator=False)
    b = rouge.compute(predictions=PREDICTIONS, references=nested, use_aggregator=False)
    assert a == b
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert a["rougeL"] == [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDICTIONS, flat, strict=True)]


def test_bleu_module_matches_sacrebleu() -> None:
    out = load_metric("bleu").compute(predictions=PREDICTIONS, references=REFERENCES)
    assert out["bleu"] == sacrebleu.corpus_bleu(PREDICTIONS, _streams(REFERENCES)).score
    assert out["sentence_scores"] == [
        sacrebleu.sentence_bleu(p, r).score for p, r in zip(PREDICTIONS, REFERENCES, strict=True)
    ]
    assert all(0.0 <= s <= 100.0 for s in out["sentence_scores"])
    assert "nrefs:var" in out["signature"]
    flat = [r[0] for r in REFERENCES]
    single = load_metric("bleu").compute(predictions=PREDICTIONS, references=flat)
    assert single["bleu"] == sacrebleu.corpus_bleu(PREDICTIONS, [flat]).score


def test_chrf_module_matches_sacrebleu() -> None:
    out = load_metric("chrf").compute(predictions=PREDICTIONS, references=REFERENCES)
    assert out["chrf"] == sacrebleu.corpus_chrf(PREDICTIONS, _streams(REFERENCES)).score
    assert out["sentence_scores"] == [
        sacrebleu.sentence_chrf(p, r).score for p, r in zip(PREDICTIONS, REFERENCES, strict=True)
    ]
    plus = load_metric("chrf").compute(predictions=PREDICTIONS, references=REFERENCES, word_order=2)
    assert plus["chrf"] == sacrebleu.corpus_chrf(PREDICTIONS, _streams(REFERENCES), word_order=2).score


def test_load_metric_is_cached_and_cwd_independent(tmp_path, monkeypatch) -> None:
    assert load_metric("rouge") is load_metric("rouge")
    monkeypatch.chdir(tmp_path)
    fresh = load_metric.__wrapped__("chrf")  # bypass the cache: really load by path from elsewhere
    assert fresh.compute(predictions=["abc"], references=["abc"])["chrf"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="unknown local metric"):
        load_metric("meteor")


# --- bootstrap -----------------------------------------------------------------------------------------


def test_bootstrap_contains_estimate_and_is_deterministic() -> None:
    values = np.random.default_rng(1).normal(0.3, 1.0, size=200)
    est, low, high = bootstrap_ci(values, seed=7)
    assert est == pytest.approx(values.mean())
    assert low < est < high
    assert bootstrap_ci(list(values), seed=7) == (est, low, high)
    assert bootstrap_ci(values, seed=8) != (est, low, high)
    # A wider level gives a wider interval.
    _, low90, high90 = bootstrap_ci(values, seed=7, alpha=0.10)
    assert low <= low90 and high90 <= high


def test_bootstrap_interval_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    widths = {}
    for n in (50, 1000):
        _, low, high = bootstrap_ci(rng.normal(0.0, 1.0, size=n), n_boot=500)
        widths[n] = high - low
    assert widths[1000] < widths[50]
    # Roughly 1/sqrt(n): sqrt(1000/50) ~ 4.5; allow generous slack for sampling noise.
    assert 2.5 < widths[50] / widths[1000] < 8.0


def test_bootstrap_edge_cases() -> None:
    assert bootstrap_ci([0.25]) == (0.25, 0.25, 0.25)
    assert bootstrap_ci([2.0] * 10) == (2.0, 2.0, 2.0)
    est, low, high = bootstrap_ci([0.0, 1.0, 5.0, 2.0, 9.0], statistic=np.median)
    assert est == 2.0 and low <= est <= high
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0, 2.0], alpha=1.5)


# --- text statistics, win rate, KL, perplexity -----------------------------------------------------------


def test_distinct_n_hand_computed() -> None:
    texts = ["the cat the cat", "The dog"]
    # unigrams: the cat the cat the dog -> 3 unique / 6
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)
    # bigrams: (the cat) (cat the) (the cat) | (the dog) -> 3 unique / 4; none span the two texts
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(["a b", "b c"], 2) == 1.0
    assert distinct_n(["one", ""], 2) == 0.0
    assert distinct_n([], 1) == 0.0
    with pytest.raises(ValueError):
        distinct_n(texts, 0)


def test_per_example_lengths() -> None:
    assert per_example_lengths(["a b  c", "", "  x \n"]) == [3, 0, 1]


def test_win_rate_values() -> None:
    assert win_rate_values([1.0, 2.0, 3.0], [1.0, 1.0, 4.0]) == [0.5, 1.0, 0.0]
    assert np.mean(win_rate_values([0.1, 0.7], [0.1, 0.7])) == 0.5
    with pytest.raises(ValueError, match="expected equal"):
        win_rate_values([1.0], [1.0, 2.0])


def test_kl_per_token_hand_computed() -> None:
    policy = [-1.0, -2.0, -0.5]
    ref = [-1.5, -1.0, -0.5]
    # diffs 0.5, -1.0, 0.0 -> mean -0.5 / 3 (a single sample's k1 can be negative)
    assert kl_per_token(policy, ref) == pytest.approx(-0.5 / 3)
    assert kl_per_token(np.array([-0.1, -0.2]), np.array([-0.3, -0.6])) == pytest.approx(0.3)
    assert kl_per_token([], []) == 0.0
    with pytest.raises(ValueError):
        kl_per_token([-1.0], [-1.0, -2.0])


# --- metric directions ---------------------------------------------------------------------------------


def test_every_metric_declares_a_direction() -> None:
    expected = {
        "reward", "rouge1", "rouge2", "rougeL", "bleu", "chrf", "bertscore", "rm_score", "kl_to_ref",
        "ref_perplexity", "distinct1", "distinct2", "length", "win_rate", "accuracy",
    }  # fmt: skip
    assert expected <= set(METRICS)
    assert all(isinstance(v, bool) for v in METRICS.values())
    assert METRICS["kl_to_ref"] is False and METRICS["ref_perplexity"] is False
    assert METRICS["rouge1"] is True and METRICS["win_rate"] is True
    assert UNRANKED <= set(METRICS)
    assert higher_is_better("reward/format") is True
    with pytest.raises(KeyError):
        higher_is_better("reward/")
    assert higher_is_better("pass@4") is True  # dynamic like reward parts (tests/test_pass_at_k.py)
    with pytest.raises(KeyError):
        higher_is_better("bogus")


def test_a_delta_takes_its_metrics_direction() -> None:
    assert higher_is_better("delta/accuracy") is True and higher_is_better("delta/kl_to_ref") is False
    assert delta_of("delta/rougeL") == "rougeL" and delta_of("rougeL") is None
    for bad in ("delta/", "delta/delta/reward", "delta/bogus"):
        assert not is_metric(bad), bad


# --- what each task's table shows ---------------------------------------------------------------------


@pytest.mark.parametrize(("env", "headline", "delta"), [
    ("TextReasoning-v0", ("accuracy", "pass@k", "Δ", "length", "kl_to_ref"), "accuracy"),
    ("TextSummarize-v0", ("rougeL", "bertscore", "Δ", "length", "kl_to_ref"), "rougeL"),
    ("TextSentiment-v0", ("reward", "Δ", "length", "kl_to_ref", "distinct2"), "reward"),
    ("TextQA-v0", ("f1", "exact_match", "Δ", "length", "kl_to_ref"), "f1"),
    ("TextDialogue-v0", ("reward", "Δ", "length"), "reward"),
    ("TextCount-v0", ("reward", "Δ", "length"), "reward"),
    ("not-an-env-id", ("reward", "Δ", "length"), "reward"),  # a hand-built frame's task: the default
])
def test_each_task_declares_its_headline_metrics(env, headline, delta) -> None:
    spec = task_metrics(env)
    assert spec.headline == headline and spec.delta_metric == delta
    assert all(is_metric(m) for m in spec.headline if m not in ("Δ", "pass@k"))


def test_n_gram_overlap_of_a_one_number_answer_is_not_computed() -> None:
    assert task_metrics("TextReasoning-v0").not_computed == N_GRAM_METRICS
    assert {"rouge2", "bleu", "chrf", "bertscore", "distinct2"} <= N_GRAM_METRICS
    for env in ("TextSummarize-v0", "TextQA-v0", "TextCount-v0"):
        assert not task_metrics(env).not_computed
    assert task_metrics("TextCount-v0") == DEFAULT_TASK_METRICS
    with pytest.raises(ValueError, match="headline"):
        TaskMetrics(("Δ", "reward"))


def test_prompt_means_keep_the_prompt_ids() -> None:
    values = [1.0, 0.0, None, 0.5, float("nan")]
    prompts = [7, 7, 3, 3, 9]
    assert prompt_means(values, prompts) == {7: 0.5, 3: 0.5}  # prompt 9 has no value left
    assert per_prompt_means(values, prompts) == [0.5, 0.5]
