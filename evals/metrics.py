"""Metric maths for the eval suite: pure numpy functions plus a loader for our local ``evaluate`` modules.

Every reported metric declares ``higher_is_better`` (see :data:`METRICS`), as lm-evaluation-harness
does, so the report can mark the best run per column without guessing. Per-example values feed
:func:`bootstrap_ci`, which is why the text metrics return sentence-level scores as well as corpus ones.
"""

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METRIC_MODULE_DIR = Path(__file__).resolve().parent / "metric_modules"
"""Where the local ``evaluate`` modules live; they are loaded by absolute path, so any cwd works."""

LOCAL_METRIC_MODULES: dict[str, tuple[str, str | None]] = {
    "rouge": ("textenv_rouge", None),
    "bleu": ("textenv_sacrebleu", "bleu"),
    "chrf": ("textenv_sacrebleu", "chrf"),
    "squad": ("textenv_squad", None),
}
"""Names accepted by :func:`load_metric` -> (file in ``metric_modules/``, the module's ``config_name``)."""

METRICS: dict[str, bool] = {
    "reward": True,  # mean episode reward from the env's reward function
    "rouge1": True,  # F-measure in [0, 1]
    "rouge2": True,
    "rougeL": True,
    "bleu": True,  # sacrebleu, 0-100
    "chrf": True,  # sacrebleu, 0-100
    "bertscore": True,  # F1
    "exact_match": True,  # SQuAD exact match in [0, 1], on tasks whose Task.metrics has "squad"
    "f1": True,  # SQuAD token F1 in [0, 1], likewise
    "rm_score": True,  # learned reward model's score
    "kl_to_ref": False,  # drift from the reference policy, nats per token: lower stays closer
    "ref_perplexity": False,  # perplexity under the reference model: lower is more fluent to it
    "distinct1": True,  # diversity: higher means less repetition / mode collapse
    "distinct2": True,
    "length": True,  # words per completion; UNRANKED, the bool only keeps the column type uniform
    "win_rate": True,  # vs. a baseline (per prompt: mean reward of its samples), ties count 0.5
    "accuracy": True,  # pass@1: share of samples whose task reward is at least 1 (a verifier's full score)
    "tool_calls": True,  # calls per episode on a tool env; UNRANKED: more calls is not better
    "tool_error_rate": False,  # per episode with a call, the share of its calls that returned an error
}
"""Each metric the suite reports -> ``higher_is_better``. Reward parts are ``reward/<part>`` and pass@k is
``pass@<k>`` (both True), see :func:`higher_is_better`. Metrics in :data:`UNRANKED` have a bool here only so
the column is uniformly boolean: the report never marks a best value for them."""

UNRANKED: frozenset[str] = frozenset({"length", "tool_calls"})
"""Metrics with no better direction: longer is not better and shorter is not better, so the report shows
them but never highlights a best run."""

REWARD_PART_PREFIX = "reward/"
PASS_AT_PREFIX = "pass@"
DELTA_PREFIX = "delta/"
"""``delta/<metric>``: a policy's paired difference from its start on ``<metric>`` (:mod:`evals.paired`)."""

CORRECT_REWARD = 1.0
"""A sample is correct (``accuracy``, ``pass@k``) when its task reward is at least this: a verifier's
full score. Graded rewards (ROUGE, VADER, the count task's share of increasing pairs) reach it only
with a perfect completion, so there ``accuracy`` is the share of perfect completions."""


HEADLINE_DELTA = "Δ"
"""In a :class:`TaskMetrics` headline: where the ``delta/<first headline metric>`` column goes."""
HEADLINE_PASS_AT_K = "pass@k"
"""In a :class:`TaskMetrics` headline: every ``pass@<k>`` metric the task has, by k."""

N_GRAM_METRICS: frozenset[str] = frozenset({"rouge1", "rouge2", "rougeL", "bleu", "chrf", "distinct1", "distinct2",
                                            "bertscore"})
"""Overlap and diversity of words: meaningless for a one-number answer (ROUGE-2 of "42" is 0 for every policy)."""


@dataclass(frozen=True)
class TaskMetrics:
    """What a task's leaderboard table shows and what is not computed for it at all.

    ``headline``: the metrics a reader compares, in reading order, shown in the Markdown table and
    the PNG (every computed metric stays in the CSV). Its first entry is the metric of the paired
    difference from each policy's start; :data:`HEADLINE_DELTA` marks where that column goes and
    :data:`HEADLINE_PASS_AT_K` stands for the task's ``pass@<k>`` metrics. ``not_computed``: metrics
    that cannot mean anything for the task, left out of every file (and their cost saved).
    """

    headline: tuple[str, ...]
    not_computed: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        first = self.headline[0] if self.headline else None
        if first is None or first in (HEADLINE_DELTA, HEADLINE_PASS_AT_K) or first in self.not_computed:
            raise ValueError(f"a task's headline must start with a metric it computes, got {self.headline}")

    @property
    def delta_metric(self) -> str:
        """The metric of the paired difference from a policy's start (the headline's first)."""
        return self.headline[0]


DEFAULT_TASK_METRICS = TaskMetrics(("reward", HEADLINE_DELTA, "length"))
"""TextCount-v0 and any task without an entry in :data:`TASK_METRICS` (a user's own task)."""

TASK_METRICS: dict[str, TaskMetrics] = {
    "reasoning": TaskMetrics(("accuracy", HEADLINE_PASS_AT_K, HEADLINE_DELTA, "length", "kl_to_ref"),
                             not_computed=N_GRAM_METRICS),
    "summarize": TaskMetrics(("rougeL", "bertscore", HEADLINE_DELTA, "length", "kl_to_ref")),
    "sentiment": TaskMetrics(("reward", HEADLINE_DELTA, "length", "kl_to_ref", "distinct2")),  # reward: VADER
    "qa": TaskMetrics(("f1", "exact_match", HEADLINE_DELTA, "length", "kl_to_ref")),
    "dialogue": TaskMetrics(("reward", HEADLINE_DELTA, "length")),  # reward: the conversation's return
}
"""Task family (:attr:`textenv.tasks.Task.name` up to its first ``/``: ``reasoning/basic_arithmetic``
is ``reasoning``) -> its :class:`TaskMetrics`. A user's task may add its own entry."""

TOOL_METRICS = ("tool_calls", "tool_error_rate")
"""Shown before ``length`` in the headline of an env registered with tools (``TextReasoningTools-v0``)."""


@functools.cache
def task_metrics(env: str) -> TaskMetrics:
    """The :class:`TaskMetrics` of env id ``env``, found through its task's name; the default for a
    task without an entry, and for a name that is no env id (a hand-built frame's ``"t"``)."""
    from textenv.tasks import setup_kwargs_of, task_of

    try:
        name = task_of(env).name
        tools = setup_kwargs_of(env).get("tools")
    except (ValueError, TypeError, ImportError, OSError):
        return DEFAULT_TASK_METRICS
    metrics = TASK_METRICS.get(name.partition("/")[0], DEFAULT_TASK_METRICS)
    if not tools:
        return metrics
    head = list(metrics.headline)
    at = head.index("length") if "length" in head else len(head)
    return dataclasses.replace(metrics, headline=(*head[:at], *TOOL_METRICS, *head[at:]))


def pass_k_of(name: str) -> int | None:
    """``k`` of a ``pass@<k>`` metric name (k a positive integer written without sign or leading
    zero, so each k has one name), else None."""
    k = name.removeprefix(PASS_AT_PREFIX)
    if name.startswith(PASS_AT_PREFIX) and k.isdigit() and k.isascii() and not k.startswith("0"):
        return int(k)
    return None


def delta_of(name: str) -> str | None:
    """``<metric>`` of a ``delta/<metric>`` name (one level: no delta of a delta), else None."""
    metric = name.removeprefix(DELTA_PREFIX)
    return metric if name.startswith(DELTA_PREFIX) and metric and not metric.startswith(DELTA_PREFIX) else None


def higher_is_better(name: str) -> bool:
    """Direction of metric ``name``, including the dynamic ``reward/<part>`` and ``pass@<k>`` columns
    (always True) and ``delta/<metric>`` (its metric's).

    Raises KeyError for an unknown name rather than guessing a direction, because a wrong guess would
    silently mark the worst run as best.
    """
    if name in METRICS:
        return METRICS[name]
    if name.startswith(REWARD_PART_PREFIX) and len(name) > len(REWARD_PART_PREFIX):
        return True
    if pass_k_of(name) is not None:
        return True
    metric = delta_of(name)
    if metric is not None:
        return higher_is_better(metric)
    raise KeyError(f"unknown metric {name!r}; expected one of {sorted(METRICS)}, 'reward/<part>', 'pass@<k>' "
                   "or 'delta/<metric>'")


def is_metric(name: str) -> bool:
    """Whether ``name`` is a metric the suite can report (a fixed one, a reward part or a pass@k)."""
    try:
        higher_is_better(name)
    except KeyError:
        return False
    return True


@functools.cache
def load_metric(name: str) -> Any:
    """Load our local ``evaluate`` module ``name`` (one of :data:`LOCAL_METRIC_MODULES`), once per process.

    Loaded by absolute file path, so it works from any cwd and never contacts the Hub (works with
    ``HF_HUB_OFFLINE=1``; ``local_files_only`` makes any accidental fetch an error instead of a hang).
    ``keep_in_memory`` avoids Arrow cache files and their locks, which we do not need in one process.
    The returned instance is reused across calls: ``compute`` resets its state, but it is not thread-safe.
    """
    if name not in LOCAL_METRIC_MODULES:
        raise ValueError(f"unknown local metric {name!r}; expected one of {tuple(LOCAL_METRIC_MODULES)}")
    # Heavy imports (evaluate pulls in datasets): only pay for them when a text metric is used.
    import evaluate
    from datasets import DownloadConfig

    module, config_name = LOCAL_METRIC_MODULES[name]
    path = METRIC_MODULE_DIR / f"{module}.py"
    if not path.is_file():
        raise FileNotFoundError(f"metric module for {name!r} missing: {path}")
    return evaluate.load(
        os.fspath(path),
        config_name=config_name,
        keep_in_memory=True,
        download_config=DownloadConfig(local_files_only=True),
    )


def bootstrap_ci(
    values: Iterable[float],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = np.mean,
) -> tuple[float, float, float]:
    """Percentile bootstrap over examples: ``(statistic(values), low, high)`` at level ``1 - alpha``.

    Resamples examples with replacement ``n_boot`` times from a generator seeded with ``seed``, so the
    same inputs always give the same interval (reports must be reproducible). Rows are drawn one
    resample at a time so memory stays O(n) for large eval sets. With one example there is no spread to
    resample, so the interval collapses to ``(v, v, v)``. The interval's width shrinks like 1/sqrt(n).
    Direction-free: whether higher is better is the metric's business (:data:`METRICS`).
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D (one number per example); got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("bootstrap_ci needs at least one value; got an empty sequence")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"values must be finite; got {int((~np.isfinite(arr)).sum())} NaN/inf entries")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    estimate = float(statistic(arr))
    if arr.size == 1:
        return estimate, estimate, estimate
    rng = np.random.default_rng(seed)
    n = arr.size
    stats = np.fromiter((statistic(arr[rng.integers(0, n, size=n)]) for _ in range(n_boot)), dtype=np.float64)
    low, high = np.percentile(stats, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return estimate, float(low), float(high)


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n: unique n-grams / total n-grams over the whole corpus (higher is better: more diverse).

    Lowercased whitespace tokens; n-grams never span two texts. Pooled over the corpus (Li et al., 2016)
    rather than averaged per text, because RL collapse shows up as the same phrases across samples.
    Returns 0.0 when there are no n-grams at all (e.g. every text shorter than ``n``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = text.lower().split()
        for i in range(len(tokens) - n + 1):
            seen.add(tuple(tokens[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0


def per_example_lengths(texts: Iterable[str]) -> list[int]:
    """Whitespace word count per text. Unranked (see :data:`UNRANKED`): reported to expose length hacking."""
    return [len(text.split()) for text in texts]


def win_rate_values(scores_a: Sequence[float], scores_b: Sequence[float]) -> list[float]:
    """Per-example 1.0 / 0.5 / 0.0 as ``a`` beats / ties / loses to ``b`` (higher is better for ``a``).

    Scores are compared with ``>``, so pass them with higher meaning better (negate lower-is-better
    ones first). Ties count half so the win rate of a run against itself is exactly 0.5. Returned per
    example so the mean can be bootstrapped.
    """
    if len(scores_a) != len(scores_b):
        raise ValueError(f"scores_a has {len(scores_a)} entries but scores_b has {len(scores_b)}; expected equal")
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores_a, scores_b, strict=True)]


def kl_per_token(
    policy_logprobs: Sequence[float] | np.ndarray, reference_logprobs: Sequence[float] | np.ndarray
) -> float:
    """KL(policy || reference) per token for one sample: mean of ``logp_policy - logp_ref`` (lower is better).

    This is the k1 estimator (Schulman, "Approximating KL divergence", 2020): unbiased when the tokens
    were sampled from the policy itself, which is how the suite generates. Single samples can be
    negative; only the average over samples estimates the (non-negative) KL. Empty sample -> 0.0.
    """
    p = np.asarray(policy_logprobs, dtype=np.float64).reshape(-1)
    r = np.asarray(reference_logprobs, dtype=np.float64).reshape(-1)
    if p.shape != r.shape:
        raise ValueError(f"policy has {p.size} token log-probs but reference has {r.size}; expected equal")
    if p.size == 0:
        return 0.0
    return float(np.mean(p - r))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one prompt from ``n`` samples of which ``c`` are correct (Chen et al. 2021,
    "Evaluating Large Language Models Trained on Code"): ``1 - C(n-c, k) / C(n, k)``.

    It is the chance that ``k`` samples drawn without replacement from the ``n`` include a correct
    one; drawing ``n > k`` samples and using this estimate has lower variance than drawing exactly
    ``k``. With ``k == n`` it is 1 if any sample is correct, else 0. Exact integer binomials, so no
    overflow or rounding before the one division.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n; got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n; got n={n}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def per_prompt_means(values: Sequence[float | None], prompts: Sequence[int]) -> list[float]:
    """The mean of each prompt's values, prompts in order of first appearance (``values[i]`` belongs
    to prompt ``prompts[i]``).

    With K samples per prompt, the samples of one prompt are not independent draws from the eval
    distribution; averaging them first makes the unit of the bootstrap the prompt, so CIs and ``n``
    count prompts. None and NaN (a metric that does not apply to a sample) are left out, and a prompt
    with no value left is dropped. With one sample per prompt this returns the values themselves, bit
    for bit (the mean of one float is that float).
    """
    return list(prompt_means(values, prompts).values())


def prompt_means(values: Sequence[float | None], prompts: Sequence[int]) -> dict[int, float]:
    """:func:`per_prompt_means` keyed by prompt id, so two policies' values can be paired by prompt."""
    if len(values) != len(prompts):
        raise ValueError(f"{len(values)} values but {len(prompts)} prompt ids; expected one id per value")
    groups: dict[int, list[float]] = {}
    for v, p in zip(values, prompts, strict=True):
        bucket = groups.setdefault(p, [])
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            bucket.append(float(v))
    return {p: math.fsum(vs) / len(vs) for p, vs in groups.items() if vs}
