"""Leaderboards: one tidy frame of scores in, a CSV, a Markdown table and a PNG out.

Every eval run ends as rows of ``(policy, task, metric, value, ci_low, ci_high, n, higher_is_better,
start, p_value)`` (long format, as lm-evaluation-harness reports: each metric declares its direction;
``delta/<metric>`` rows hold a policy's paired difference from the policy named in ``start``, with
its permutation ``p_value``, :mod:`evals.paired`). This module
fixes that schema (:func:`make_frame`), renders it for people (:func:`to_markdown`,
:func:`plot_leaderboard`) with the provenance a reader needs to trust or reproduce a number
(:class:`RunInfo`: commit, date, seeds, model, decoding, versions), and writes all three files so
that a crashed or failed run never leaves a half-updated leaderboard (:func:`write_leaderboard`).
"""

from __future__ import annotations

import io
import math
import os
import platform
import subprocess
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evals.metrics import (
    DELTA_PREFIX,
    HEADLINE_DELTA,
    HEADLINE_PASS_AT_K,
    UNRANKED,
    delta_of,
    pass_k_of,
    task_metrics,
)
from evals.paired import verdict
from textenv.io import atomic_write_group, ensure_file_replaceable

# "task" holds the env id: the leaderboard CSV schema, which committed tables and their readers share
REQUIRED_COLUMNS = ["policy", "task", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better"]
COLUMNS = [*REQUIRED_COLUMNS, "start", "p_value"]
"""``start`` and ``p_value`` are filled on ``delta/<metric>`` rows only; a row (or a CSV written before
they existed) without them reads as ``""`` and NaN."""
_STR_COLUMNS = ("policy", "task", "metric")
_FLOAT_COLUMNS = ("value", "ci_low", "ci_high", "p_value")
_SORT = ["task", "metric", "policy"]
_VERSIONED = ("torch", "transformers", "gymnasium", "evaluate", "textenv")

EXTENSIONS = ("csv", "md", "png")
"""The files of one leaderboard, ``<name>.<ext>`` each."""
_MAX_NAME_BYTES = 200  # leaves room for the hidden ".<name>.png.tmp-XXXXXXXX" within a 255-byte file name

_ORDER = ("base", "sft", "rm", "vote", "ppo-task", "ppo-rm")
SEED_MARK = "@seed"  # "ppo-task@seed1": the ppo-task row trained with seed 1 (evals.run --seeds)
_BASELINES = ("random", "reference")


def policy_order(policies: Iterable[str]) -> list[str]:
    """The order a reader compares in: base, SFT, best-of-n, majority vote, RL (the suite's names,
    a ``" (= sft)"`` suffix or an ``@seed<S>`` ignored), then any other policy by name, then the random and
    reference baselines."""
    def key(p: str) -> tuple[int, str]:
        name = p.split(" (")[0].split(SEED_MARK)[0]  # "ppo-task (mean of 3 seeds)", "ppo-task@seed1": by ppo-task
        if name in _ORDER:
            return _ORDER.index(name), p
        if name in _BASELINES:
            return len(_ORDER) + 1 + _BASELINES.index(name), p
        return len(_ORDER), p

    return sorted(set(policies), key=key)


def _same_values(tdf: pd.DataFrame, a: str, b: str) -> bool:
    """True when metrics ``a`` and ``b`` hold the same value for every policy (summaries' reward
    is ROUGE-L): one panel says it, two would repeat it."""
    va = tdf[tdf["metric"] == a].set_index("policy")["value"]
    vb = tdf[tdf["metric"] == b].set_index("policy")["value"]
    return len(va) > 0 and va.sort_index().index.equals(vb.sort_index().index) and bool(
        np.allclose(va.sort_index().to_numpy(), vb.sort_index().to_numpy(), equal_nan=True))


def make_frame(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """Build the one leaderboard frame every other function takes, with fixed dtypes and order.

    Fixed dtypes make a CSV round trip compare equal and keep ``n`` an integer; the fixed sort
    (task, metric, policy) makes every rendering deterministic whatever order the rows came in.
    Strings use ``astype(str)``: the installed pandas' default string dtype, on both paths.
    Raises ValueError naming the problem: missing or unexpected columns, empty names, NaN or
    non-integer ``n``, duplicate (policy, task, metric) rows, a metric whose direction differs
    between rows of one task, a ``delta/`` row without its ``start`` or another row with one, or a
    p-value outside [0, 1]. ``start`` and ``p_value`` may be left out (``""`` and NaN).
    """
    records = [dict(r) for r in rows]
    present = set().union(*(r.keys() for r in records)) if records else set(COLUMNS)
    missing = [c for c in REQUIRED_COLUMNS if any(c not in r for r in records)]
    if missing:
        raise ValueError(f"leaderboard rows are missing column(s) {missing}; expected {COLUMNS}")
    extra = sorted(present - set(COLUMNS))
    if extra:
        raise ValueError(f"leaderboard rows have unexpected column(s) {extra}; expected {COLUMNS}")
    data: dict[str, list[object]] = {c: [r.get(c) for r in records] for c in COLUMNS}
    for c in _STR_COLUMNS:
        bad = [v for v in data[c] if not isinstance(v, str) or not v]
        if bad:
            raise ValueError(f"column {c!r} must hold non-empty strings, got {bad[0]!r}")
    for c in _FLOAT_COLUMNS:
        data[c] = [_to_float(v, c) for v in data[c]]
    data["n"] = [_to_count(v) for v in data["n"]]
    data["higher_is_better"] = [_to_bool(v) for v in data["higher_is_better"]]
    data["start"] = [_to_start(s, m) for s, m in zip(data["start"], data["metric"], strict=True)]
    bad_p = [p for p in data["p_value"] if not (math.isnan(p) or 0.0 <= p <= 1.0)]  # type: ignore[arg-type]
    if bad_p:
        raise ValueError(f"column 'p_value' must hold probabilities in [0, 1] or nothing, got {bad_p[0]!r}")

    df = pd.DataFrame(data, columns=COLUMNS)
    df = df.astype({**dict.fromkeys((*_STR_COLUMNS, "start"), str), **dict.fromkeys(_FLOAT_COLUMNS, "float64"),
                    "n": "int64", "higher_is_better": "bool"})
    dup = df.duplicated(["policy", "task", "metric"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise ValueError(f"duplicate row for policy={first.policy!r} task={first.task!r} metric={first.metric!r}")
    directions = df.groupby(["task", "metric"])["higher_is_better"].nunique()
    if (directions > 1).any():
        env, metric = directions[directions > 1].index[0]
        raise ValueError(f"metric {metric!r} on env {env!r} has rows with both higher_is_better values")
    return df.sort_values(_SORT, kind="mergesort").reset_index(drop=True)


def _to_float(v: object, column: str) -> float:
    if v is None or (isinstance(v, str) and v.strip() == ""):
        return math.nan
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"column {column!r} must be numeric, got {v!r}") from None


def _to_start(v: object, metric: object) -> str:
    """A ``delta/`` row's start policy (required), ``""`` on any other row."""
    start = "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
    if not isinstance(start, str):
        raise ValueError(f"column 'start' must hold a policy name, got {v!r}")
    if bool(start) != (delta_of(str(metric)) is not None):
        raise ValueError(f"row of metric {metric!r}: " + ("a delta/ row must name its start policy" if not start
                                                          else f"only delta/ rows name a start, got {start!r}"))
    return start


def _to_count(v: object) -> int:
    f = _to_float(v, "n")
    if not math.isfinite(f) or f != int(f) or f < 0:
        raise ValueError(f"column 'n' must hold non-negative integers (NaN is not allowed), got {v!r}")
    return int(f)


def _to_bool(v: object) -> bool:
    # Not bool(v): bool("False") is True, and CSV hands strings back.
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    raise ValueError(f"column 'higher_is_better' must be a bool, got {v!r}")


@dataclass(frozen=True)
class RunInfo:
    """What a reader needs to trust or reproduce a leaderboard; printed in its header."""

    suite: str
    """Eval suite name; also the leaderboard's file stem."""
    commit: str
    """Short git hash of the textenv tree, ``-dirty`` if it had uncommitted changes, ``unknown`` outside git."""
    date: str
    """When the run was collected, ISO 8601 in UTC."""
    seeds: tuple[int, ...]
    """Seeds every policy was evaluated on."""
    model: str
    """Base model the policies share."""
    decoding: Mapping[str, object]
    """Generation settings (temperature, top_p, max_new_tokens, ...), free-form."""
    limit: int | None
    """Examples per task (None: the whole split)."""
    versions: Mapping[str, str] = field(default_factory=dict)
    """python, torch, transformers, gymnasium, evaluate, textenv: the libraries a number depends on."""
    budgets: str = ""
    """Compute budgets per policy (e.g. ``"ppo: 20k episodes; rm best-of-n: n=8"``), free-form."""
    notes: tuple[str, ...] = ()
    """Further header lines (e.g. each reward model's held-out accuracy), one bullet each."""


def _git(*args: str) -> str:
    """Run read-only git in the textenv checkout; ``--no-optional-locks`` so it never writes the index."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, text=True,
                         timeout=10, check=True)
    return out.stdout.strip()


def _git_commit() -> str:
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = bool(_git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _versions() -> dict[str, str]:
    # metadata, not import: importing torch just to read its version costs seconds.
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def collect_run_info(suite: str, seeds: Sequence[int], model: str, decoding: Mapping[str, object],
                     limit: int | None, budgets: str = "", notes: Sequence[str] = ()) -> RunInfo:
    """Fill in the provenance a caller cannot be trusted to type by hand: commit, UTC date, versions."""
    return RunInfo(suite=suite, commit=_git_commit(), date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   seeds=tuple(int(s) for s in seeds), model=model, decoding=dict(decoding), limit=limit,
                   versions=_versions(), budgets=budgets, notes=tuple(notes))


def _fmt(v: float) -> str:
    """Three decimals, the precision eval CIs support; scientific only where that would hide the value."""
    if math.isnan(v):
        return "n/a"
    if v == 0 or 1e-3 <= abs(v) < 1e6:
        return f"{v:.3f}"
    return f"{v:.3g}"


def _cell(value: float, ci_low: float, ci_high: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isnan(ci_low) or math.isnan(ci_high):
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(ci_low)}, {_fmt(ci_high)}]"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _n_label(ns: Iterable[int]) -> str:
    values = sorted(set(ns))
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def _signed(v: float) -> str:
    """:func:`_fmt` with a sign, for differences: ``+0.054``, ``-0.012``; an exact 0 has none."""
    text = _fmt(v)
    return text if math.isnan(v) or v == 0 else f"+{text}" if v > 0 else text


def _delta_cell(r: Any) -> str:  # a row of the frame, from itertuples
    """``+0.054 [+0.012, +0.097] vs sft: better (p=0.003)``; better or worse only when the interval
    excludes 0 (:func:`evals.paired.verdict`)."""
    if math.isnan(r.value):
        return "n/a"
    ci = "" if math.isnan(r.ci_low) or math.isnan(r.ci_high) else f" [{_signed(r.ci_low)}, {_signed(r.ci_high)}]"
    p = "" if math.isnan(r.p_value) else f" (p={r.p_value:.2g})"
    return f"{_signed(r.value)}{ci} vs {_md(r.start)}: {verdict((r.ci_low, r.ci_high), r.higher_is_better)}{p}"


def table_metrics(env: str, available: Iterable[str], metrics: Sequence[str] | None = None) -> list[str]:
    """The columns of ``env``'s table (and panels of its plot), in reading order, among the
    ``available`` metrics: the task's headline (:func:`evals.metrics.task_metrics`: its
    ``pass@k`` metrics by k, its ``delta/`` column where the headline puts it), or the given
    ``metrics`` each followed by its ``delta/`` column where there is one. A task that has none of
    its headline metrics (a frame of other metrics) shows every metric it has."""
    have = set(available)
    if metrics is not None:
        return [c for m in metrics for c in (m, DELTA_PREFIX + m) if c in have]
    spec = task_metrics(env)
    out: list[str] = []
    for item in spec.headline:
        if item == HEADLINE_PASS_AT_K:
            out += sorted((m for m in have if pass_k_of(m) is not None), key=pass_k_of)  # type: ignore[arg-type]
        elif item == HEADLINE_DELTA:
            out += [m for m in (DELTA_PREFIX + spec.delta_metric,) if m in have]
        elif item in have:
            out.append(item)
    return out or sorted(m for m in have if delta_of(m) is None)


def _header_name(metric: str, higher: bool, unranked: frozenset[str]) -> str:
    base = delta_of(metric)
    if base is not None:
        return f"Δ {_md(base)} vs start"
    return _md(metric) if metric in unranked else f"{_md(metric)} {'↑' if higher else '↓'}"


def to_markdown(df: pd.DataFrame, info: RunInfo, unranked: frozenset[str] = UNRANKED,
                metrics: Sequence[str] | None = None) -> str:
    """Render the leaderboard: a provenance header, then one policies × metrics table per task.

    Each table shows the task's headline metrics in reading order (:func:`table_metrics`; ``metrics``
    names other columns for every task) and names the rest, which stay in the CSV. The best policy
    per metric is bold (max if higher is better, else min; exact ties all bold); NaN is "n/a" and
    never best; ``unranked`` metrics (e.g. length, where neither direction is "better") and the
    ``Δ vs start`` column are never bold: that column says better or worse only where its paired
    interval excludes 0. The same frame and info always give the same bytes.
    """
    df = make_frame(df.to_dict("records"))
    versions = ", ".join(f"{k} {v}" for k, v in info.versions.items()) or "unknown"
    decoding = ", ".join(f"{k}={v}" for k, v in sorted(info.decoding.items())) or "default"
    lines = [
        f"# Leaderboard: {info.suite}",
        "",
        f"- commit: `{info.commit}`",
        f"- date: {info.date}",
        f"- seeds: {', '.join(map(str, info.seeds)) or 'none'}",
        f"- model: {info.model}",
        f"- decoding: {decoding}",
        f"- limit per task: {'all' if info.limit is None else info.limit}",
        f"- versions: {versions}",
        f"- budgets: {info.budgets or 'n/a'}",
        *[f"- {_md(note)}" for note in info.notes],
        "",
        "↑ higher is better, ↓ lower is better, no arrow: unranked. Cells read `value [ci_low, ci_high]` "
        "(confidence interval over the evaluated examples); **bold** is the best policy per metric (ties all "
        f"bold; never for unranked metrics: {', '.join(sorted(unranked)) or 'none'}). n: examples scored per policy; "
        "n/a: no value; —: not evaluated.",
    ]
    if any(delta_of(m) is not None for m in df["metric"]):
        lines += ["", "Δ vs start: the mean over prompts of the row's difference from the policy it was trained "
                  "or sampled from (named in the cell: RL from SFT, SFT from base, best-of-n and vote from the policy "
                  "they sample), on the prompts both scored, with a paired bootstrap 95% interval and a two-sided "
                  "permutation p-value; a row is better or worse only when that interval excludes 0, else \"no clear "
                  "difference\"."]
    if df["policy"].str.contains(" seeds)", regex=False).any():
        lines += ["", f"`NAME (mean of K seeds)`: NAME trained K times from the same start, one seed each (rows "
                  f"`NAME{SEED_MARK}S`); each cell is the mean of the K runs' values with a 95% bootstrap interval "
                  "over runs (n counts runs), Δ included: training variance, not only the prompts' sampling."]
    if any(pass_k_of(m) is not None for m in df["metric"]):
        lines += ["", "Sampled tasks: each metric is first averaged over a prompt's K samples, so n and the "
                  "intervals count prompts. accuracy: share of samples with the task's full reward (≥ 1, a "
                  "verifier's correct), i.e. pass@1; pass@k: unbiased estimator (Chen et al. 2021) that one of k "
                  "samples is correct."]
    for env, tdf in df.groupby("task", sort=True):
        lines += ["", f"## {_md(str(env))}", "", *_task_table(str(env), tdf, unranked, metrics)]
    return "\n".join(lines) + "\n"


def _task_table(env: str, tdf: pd.DataFrame, unranked: frozenset[str], metrics: Sequence[str] | None) -> list[str]:
    """One task's table: its columns (:func:`table_metrics`), the best values bold, then a line
    naming the metrics left to the CSV and those not computed for the task."""
    available = sorted(tdf["metric"].unique())
    shown = table_metrics(env, available, metrics)
    policies = policy_order(tdf["policy"])
    higher = tdf.groupby("metric")["higher_is_better"].first()
    cells = {(r.policy, r.metric): r for r in tdf.itertuples(index=False)}
    best: dict[str, set[str]] = {}
    for m in shown:
        vals = tdf[(tdf["metric"] == m) & tdf["value"].notna()]
        if m in unranked or delta_of(m) is not None or vals.empty:
            continue
        top = vals["value"].max() if higher[m] else vals["value"].min()
        best[m] = set(vals.loc[vals["value"] == top, "policy"])
    header = ["policy"] + [_header_name(m, bool(higher[m]), unranked) for m in shown] + ["n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    scored = tdf[tdf["metric"].map(lambda m: delta_of(m) is None)]  # n: examples scored, not pairs
    for p in policies:
        row = [_md(p)]
        for m in shown:
            r = cells.get((p, m))
            if r is None:
                text = "—"
            else:
                text = _delta_cell(r) if delta_of(m) is not None else _cell(r.value, r.ci_low, r.ci_high)
            row.append(f"**{text}**" if p in best.get(m, ()) else text)
        ns = scored.loc[scored["policy"] == p, "n"]
        row.append(_n_label(ns) if len(ns) else "—")
        lines.append("| " + " | ".join(row) + " |")
    rest = [m for m in available if m not in shown]
    not_computed = [m for m in sorted(task_metrics(env).not_computed) if m not in available] if metrics is None else []
    if rest or not_computed:
        lines.append("")
        if rest:
            lines.append(f"Also in the CSV: {', '.join(_md(m) for m in rest)}.")
        if not_computed:
            lines.append(f"Not computed here (no meaning for this task's answers): {', '.join(not_computed)}.")
    return lines


def read_leaderboard_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a leaderboard CSV back into the exact frame that was written.

    Everything is read as text (no NA guessing, so a policy called "NA" stays a string) and goes
    through :func:`make_frame`, which restores the dtypes; floats were written as shortest
    round-trip reprs, so values compare equal bit for bit.
    """
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    return make_frame(raw.to_dict("records"))


def _bars(ax, sub: pd.DataFrame, env: str, metric: str, unranked: frozenset[str] = UNRANKED) -> None:
    """One bar per policy with its CI, in :func:`policy_order`; a missing value is left out rather
    than read as zero. The ``reference`` policy is a dashed line, not a bar, and where it lies
    far beyond every other policy (ROUGE of the reference itself is 1) it is only named, so the
    real policies keep the axis. A ``delta/`` panel labels each bar with its start and draws 0:
    a bar whose interval crosses that line is no clear difference."""
    sub = sub.dropna(subset=["value"])
    reference = float(sub.loc["reference", "value"]) if "reference" in sub.index else None
    sub = sub.loc[[p for p in policy_order(sub.index) if p != "reference"]]
    is_delta = delta_of(metric) is not None
    policies = [f"{p} vs {sub.loc[p, 'start']}" if is_delta else p for p in sub.index]
    y = np.arange(len(policies))
    value = sub["value"].to_numpy()
    err = np.nan_to_num(np.vstack([value - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - value]))
    ax.barh(y, value, xerr=np.clip(err, 0, None), capsize=3, color="tab:blue", alpha=0.8)
    ax.set_yticks(y, policies, fontsize=8)
    ax.invert_yaxis()
    higher = bool(sub["higher_is_better"].iloc[0]) if len(sub) else True
    title = f"{env}: {_header_name(metric, higher, unranked) if is_delta else metric}"
    title += "" if metric in unranked else " ↑" if higher else " ↓"
    if is_delta:  # 0 drawn inside the axis, not on its edge where the bars start
        ax.use_sticky_edges = False
        ax.margins(x=0.08)
        ax.axvline(0.0, lw=1, color="black")
    elif reference is not None and math.isfinite(reference):
        low, high = ax.get_xlim()
        if low <= reference <= high + 0.25 * (high - low):
            ax.axvline(reference, ls="--", lw=1, color="gray", label=f"reference {_fmt(reference)}")
            ax.legend(fontsize=7, loc="lower right")
        else:
            title += f" (reference: {_fmt(reference)}, off the axis)"
    ax.set_title(title, fontsize=9)


def _reward_vs_kl(ax, tdf: pd.DataFrame, env: str) -> None:
    """The picture RLHF people read: task reward against KL to the base model, one point per policy
    that has both (with both CIs); policies without a KL (best-of-n, random) as labelled lines; the
    reference (its reward is the maximum by construction on reference-scored tasks) is left out."""
    wide = tdf.pivot(index="policy", columns="metric", values=["value", "ci_low", "ci_high"])
    reward = wide[("value", "reward")].dropna()
    reward = reward[[p for p in policy_order(reward.index) if p != "reference"]]  # the bars name it
    kl = wide[("value", "kl_to_ref")].dropna() if ("value", "kl_to_ref") in wide else pd.Series(dtype=float)
    both = [p for p in reward.index if p in kl.index]
    for k, p in enumerate(both):
        x, y = kl[p], reward[p]
        xerr = [[x - wide.loc[p, ("ci_low", "kl_to_ref")]], [wide.loc[p, ("ci_high", "kl_to_ref")] - x]]
        yerr = [[y - wide.loc[p, ("ci_low", "reward")]], [wide.loc[p, ("ci_high", "reward")] - y]]
        ax.errorbar([x], [y], xerr=np.clip(xerr, 0, None), yerr=np.clip(yerr, 0, None), fmt="o", capsize=3,
                    color=f"C{k}", label=p)
    for k, p in enumerate(p for p in reward.index if p not in both):
        ax.axhline(reward[p], ls="--", lw=1, color=f"C{len(both) + k}", label=f"{p} (no KL)")
    ax.set_xlabel("KL to base (per token) ↓", fontsize=8)
    ax.set_ylabel("task reward ↑", fontsize=8)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{env}: reward vs KL", fontsize=9)


def plot_leaderboard(df: pd.DataFrame, path: str | os.PathLike[str],
                     metrics: Sequence[str] | None = None) -> dict[str, list[str]]:
    """PNG: one row per task with the columns of its table (:func:`table_metrics`: its headline
    metrics, or the given ``metrics``), a bar per policy with its CI; the ``Δ vs start`` panel
    draws each row's paired difference against 0. Where the task's policies have a reward and a
    KL to the base model, the KL panel is the reward-vs-KL picture instead (it shows both, each
    with its CI). A task draws only the panels it has data for (no empty panels), and a metric whose
    values equal an earlier panel's for every policy (summaries' reward is ROUGE-L) is not drawn twice.

    Uses a bare ``Figure`` on the Agg canvas, not pyplot, so it touches no global backend state
    and is safe in tests and worker threads. Returns the panels drawn per task.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    df = make_frame(df.to_dict("records"))
    if df.empty:
        raise ValueError("cannot plot an empty leaderboard")
    available = sorted(df["metric"].unique())
    unknown = [m for m in metrics or () if m not in available]
    if unknown or (metrics is not None and not metrics):
        raise ValueError(f"metrics {unknown or list(metrics or ())} not in the leaderboard; available: {available}")
    envs = sorted(df["task"].unique())
    panels: dict[str, list[str]] = {}
    for env in envs:
        tdf = df[df["task"] == env]
        have = set(tdf.dropna(subset=["value"])["metric"])
        panels[env] = []
        for m in table_metrics(env, have, metrics):
            if m == "kl_to_ref" and "reward" in have:
                m = "reward vs KL"
            if m not in panels[env] and not any(_same_values(tdf, p, m) for p in panels[env]):
                panels[env].append(m)
    width = max(max(len(v) for v in panels.values()), 1)
    n_pol = df["policy"].nunique()
    fig = Figure(figsize=(4.5 * width, (0.35 * n_pol + 1.6) * len(envs)), layout="constrained")
    FigureCanvasAgg(fig)
    subfigs = np.atleast_1d(fig.subfigures(len(envs), 1))
    for sf, env in zip(subfigs, envs, strict=True):
        tdf = df[df["task"] == env]
        if not panels[env]:
            sf.suptitle(f"{env}: none of {list(metrics or ())} evaluated", fontsize=9)
            continue
        axes = np.atleast_1d(sf.subplots(1, len(panels[env]), squeeze=False)[0])
        for ax, panel in zip(axes, panels[env], strict=True):
            if panel == "reward vs KL":
                _reward_vs_kl(ax, tdf, env)
            else:
                _bars(ax, tdf[tdf["metric"] == panel].set_index("policy"), env, panel)
    fig.savefig(path, format="png", dpi=100)
    return panels


def has_control_characters(text: str) -> bool:
    """True when ``text`` holds a character that breaks a line or a table row where it is shown:
    control and format characters (newline, tab, escape, bidi overrides), line and paragraph
    separators."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in text)


def check_leaderboard_name(name: str) -> str:
    """``name`` when it can be a leaderboard's file stem: a plain file name (no folder, not hidden,
    no control characters, at most 200 bytes); otherwise a one-line error saying what to pass."""
    why = ("is empty" if not name
           else "holds a path separator" if os.sep in name or (os.altsep and os.altsep in name)
           else "starts with '.' (hidden, or a folder)" if name.startswith(".")
           else "holds a control character" if has_control_characters(name)
           else f"is longer than {_MAX_NAME_BYTES} bytes" if len(os.fsencode(name)) > _MAX_NAME_BYTES
           else None)
    if why:
        raise ValueError(f"leaderboard name {name!r} {why}: pass a plain file name such as 'quick' (--name), and "
                         "the folder as --out")
    return name


def leaderboard_paths(directory: str | os.PathLike[str], name: str) -> dict[str, Path]:
    """The files ``write_leaderboard(df, directory, name, ...)`` writes, by extension, once checked
    that it can: a valid name (:func:`check_leaderboard_name`), ``directory`` a folder or creatable
    (no file on its path) and writable, each target absent or a regular file. Call it before the
    evaluation, so that an unwritable output fails in a second, not after the run."""
    check_leaderboard_name(name)
    out = Path(directory)
    existing = out.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"leaderboard folder {out} cannot be made: {existing} is a file, not a folder; "
                                 "choose another folder (--out)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"leaderboard folder {out}: {existing} is not writable; choose another folder (--out)")
    return {ext: ensure_file_replaceable(out / f"{name}.{ext}") for ext in EXTENSIONS}


def write_leaderboard(df: pd.DataFrame, directory: str | os.PathLike[str], suite: str,
                      info: RunInfo, metrics: Sequence[str] | None = None) -> dict[str, Path]:
    """Write ``<suite>.csv``, ``.md`` and ``.png`` into ``directory``, all or nothing.

    The Markdown and PNG show each task's headline metrics, or the ``metrics`` a run asked for
    (those of them it has); the CSV has every row.

    The targets are checked first (:func:`leaderboard_paths`), all three are rendered in memory,
    then replaced together by :func:`textenv.io.atomic_write_group`: a failed render, a full disk
    or a folder in place of one of them leaves the previous three as they were, and no temporary
    file behind. Leaderboards are committed and read by other tools, so a CSV that disagrees with
    its Markdown is worse than a stale pair.
    """
    final = leaderboard_paths(directory, suite)
    if info.suite != suite:
        raise ValueError(f"info.suite {info.suite!r} does not match suite {suite!r}")
    df = make_frame(df.to_dict("records"))
    shown = None if metrics is None else [m for m in metrics if m in set(df["metric"])] or None
    png = io.BytesIO()  # everything is rendered before the first file is replaced
    plot_leaderboard(df, png, metrics=shown)
    rendered = {"csv": df.to_csv(index=False), "md": to_markdown(df, info, metrics=shown), "png": png.getvalue()}
    atomic_write_group({final[ext]: rendered[ext] for ext in EXTENSIONS})
    return final
