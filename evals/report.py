"""Leaderboards: one tidy frame of scores in, a CSV, a Markdown table and a PNG out.

Every eval run ends as rows of ``(policy, task, metric, value, ci_low, ci_high, n, higher_is_better)``
(long format, as lm-evaluation-harness reports: each metric declares its direction). This module
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

import numpy as np
import pandas as pd

from evals.metrics import UNRANKED, pass_k_of
from textenv.io import atomic_write_group, ensure_file_replaceable

# "task" holds the env id: the leaderboard CSV schema, which committed tables and their readers share
COLUMNS = ["policy", "task", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better"]
_STR_COLUMNS = ("policy", "task", "metric")
_FLOAT_COLUMNS = ("value", "ci_low", "ci_high")
_SORT = ["task", "metric", "policy"]
_VERSIONED = ("torch", "transformers", "gymnasium", "evaluate", "textenv")
HEADLINE_METRICS = ("reward", "rougeL", "length")
"""Plotted by default: the numbers a reader compares first (length, so a reward won by shortening
or lengthening replies shows); everything else is in the tables."""

EXTENSIONS = ("csv", "md", "png")
"""The files of one leaderboard, ``<name>.<ext>`` each."""
_MAX_NAME_BYTES = 200  # leaves room for the hidden ".<name>.png.tmp-XXXXXXXX" within a 255-byte file name

_ORDER = ("base", "sft", "rm", "vote", "ppo-task", "ppo-rm")
_BASELINES = ("random", "reference")


def policy_order(policies: Iterable[str]) -> list[str]:
    """The order a reader compares in: base, SFT, best-of-n, majority vote, RL (the suite's names,
    a ``" (= sft)"`` suffix ignored), then any other policy by name, then the random and
    reference baselines."""
    def key(p: str) -> tuple[int, str]:
        name = p.split(" (")[0]
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


def _reasoning_metrics(metrics: Iterable[str]) -> list[str]:
    """``accuracy`` then the ``pass@k`` columns by k, when a task has pass@k (it was sampled K > 1
    times, which a suite asks for on the tasks whose correctness it cares about); else none, so
    graded tasks do not get a panel of near-zero accuracies."""
    passes = sorted((m for m in metrics if pass_k_of(m) is not None), key=pass_k_of)
    if not passes:
        return []
    return [m for m in ("accuracy",) if m in metrics] + passes


def make_frame(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """Build the one leaderboard frame every other function takes, with fixed dtypes and order.

    Fixed dtypes make a CSV round trip compare equal and keep ``n`` an integer; the fixed sort
    (task, metric, policy) makes every rendering deterministic whatever order the rows came in.
    Strings use ``astype(str)``: the installed pandas' default string dtype, on both paths.
    Raises ValueError naming the problem: missing or unexpected columns, empty names, NaN or
    non-integer ``n``, duplicate (policy, task, metric) rows, or a metric whose direction differs
    between rows of one task.
    """
    records = [dict(r) for r in rows]
    present = set().union(*(r.keys() for r in records)) if records else set(COLUMNS)
    missing = [c for c in COLUMNS if any(c not in r for r in records)]
    if missing:
        raise ValueError(f"leaderboard rows are missing column(s) {missing}; expected {COLUMNS}")
    extra = sorted(present - set(COLUMNS))
    if extra:
        raise ValueError(f"leaderboard rows have unexpected column(s) {extra}; expected {COLUMNS}")
    data: dict[str, list[object]] = {c: [r[c] for r in records] for c in COLUMNS}
    for c in _STR_COLUMNS:
        bad = [v for v in data[c] if not isinstance(v, str) or not v]
        if bad:
            raise ValueError(f"column {c!r} must hold non-empty strings, got {bad[0]!r}")
    for c in _FLOAT_COLUMNS:
        data[c] = [_to_float(v, c) for v in data[c]]
    data["n"] = [_to_count(v) for v in data["n"]]
    data["higher_is_better"] = [_to_bool(v) for v in data["higher_is_better"]]

    df = pd.DataFrame(data, columns=COLUMNS)
    df = df.astype({**dict.fromkeys(_STR_COLUMNS, str), **dict.fromkeys(_FLOAT_COLUMNS, "float64"),
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


def to_markdown(df: pd.DataFrame, info: RunInfo, unranked: frozenset[str] = UNRANKED) -> str:
    """Render the leaderboard: a provenance header, then one policies × metrics table per task.

    The best policy per metric is bold (max if higher is better, else min; exact ties all bold);
    NaN is "n/a" and never best; ``unranked`` metrics (e.g. length, where neither direction is
    "better") are shown but never bold. The same frame and info always give the same bytes.
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
    if any(pass_k_of(m) is not None for m in df["metric"]):
        lines += ["", "Sampled tasks: each metric is first averaged over a prompt's K samples, so n and the "
                  "intervals count prompts. accuracy: share of samples with the task's full reward (≥ 1, a "
                  "verifier's correct), i.e. pass@1; pass@k: unbiased estimator (Chen et al. 2021) that one of k "
                  "samples is correct."]
    for env, tdf in df.groupby("task", sort=True):
        metrics = sorted(tdf["metric"].unique())
        policies = policy_order(tdf["policy"])
        higher = tdf.groupby("metric")["higher_is_better"].first()
        cells = {(r.policy, r.metric): r for r in tdf.itertuples(index=False)}
        best: dict[str, set[str]] = {}
        for m in metrics:
            vals = tdf[(tdf["metric"] == m) & tdf["value"].notna()]
            if m in unranked or vals.empty:
                continue
            top = vals["value"].max() if higher[m] else vals["value"].min()
            best[m] = set(vals.loc[vals["value"] == top, "policy"])
        header = ["policy"] + [_md(m) if m in unranked else f"{_md(m)} {'↑' if higher[m] else '↓'}"
                               for m in metrics] + ["n"]
        lines += ["", f"## {_md(str(env))}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for p in policies:
            row = [_md(p)]
            for m in metrics:
                r = cells.get((p, m))
                text = "—" if r is None else _cell(r.value, r.ci_low, r.ci_high)
                row.append(f"**{text}**" if p in best.get(m, ()) else text)
            row.append(_n_label(tdf.loc[tdf["policy"] == p, "n"]))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


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
    real policies keep the axis."""
    sub = sub.dropna(subset=["value"])
    reference = float(sub.loc["reference", "value"]) if "reference" in sub.index else None
    sub = sub.loc[[p for p in policy_order(sub.index) if p != "reference"]]
    policies = list(sub.index)
    y = np.arange(len(policies))
    value = sub["value"].to_numpy()
    err = np.nan_to_num(np.vstack([value - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - value]))
    ax.barh(y, value, xerr=np.clip(err, 0, None), capsize=3, color="tab:blue", alpha=0.8)
    ax.set_yticks(y, policies, fontsize=8)
    ax.invert_yaxis()
    arrow = "" if metric in unranked else " ↑" if bool(sub["higher_is_better"].iloc[0]) else " ↓"
    title = f"{env}: {metric}{arrow}"
    if reference is not None and math.isfinite(reference):
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
    """PNG: one row per task with its headline metrics (a bar per policy with its CI) and, where
    policies have a KL to the base model, a reward-vs-KL panel. A task draws only the panels it has
    data for (no empty panels).

    Uses a bare ``Figure`` on the Agg canvas, not pyplot, so it touches no global backend state
    and is safe in tests and worker threads. Default metrics: those of ``HEADLINE_METRICS``
    present, else the first metric in the frame, plus on each task with a ``pass@k`` its
    ``accuracy`` and ``pass@k`` (:func:`_reasoning_metrics`); a metric whose values equal an
    earlier panel's for every policy (summaries' reward is ROUGE-L) is not drawn twice. Returns
    the panels drawn per task.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    df = make_frame(df.to_dict("records"))
    if df.empty:
        raise ValueError("cannot plot an empty leaderboard")
    available = sorted(df["metric"].unique())
    extra: dict[str, list[str]] = {}  # per task, the default's reasoning panels
    if metrics is None:
        metrics = [m for m in HEADLINE_METRICS if m in available] or available[:1]
        extra = {t: _reasoning_metrics(set(tdf.dropna(subset=["value"])["metric"])) for t, tdf in df.groupby("task")}
    unknown = [m for m in metrics if m not in available]
    if unknown or not metrics:
        raise ValueError(f"metrics {unknown or list(metrics)} not in the leaderboard; available: {available}")
    envs = sorted(df["task"].unique())
    panels: dict[str, list[str]] = {}
    for env in envs:
        tdf = df[df["task"] == env]
        have = set(tdf.dropna(subset=["value"])["metric"])
        panels[env] = []
        for m in [m for m in metrics if m in have] + list(extra.get(env, ())):
            if m not in panels[env] and not any(_same_values(tdf, p, m) for p in panels[env]):
                panels[env].append(m)
        if {"reward", "kl_to_ref"} <= have:
            panels[env].append("reward vs KL")
    width = max(max(len(v) for v in panels.values()), 1)
    n_pol = df["policy"].nunique()
    fig = Figure(figsize=(4.5 * width, (0.35 * n_pol + 1.6) * len(envs)), layout="constrained")
    FigureCanvasAgg(fig)
    subfigs = np.atleast_1d(fig.subfigures(len(envs), 1))
    for sf, env in zip(subfigs, envs, strict=True):
        tdf = df[df["task"] == env]
        if not panels[env]:
            sf.suptitle(f"{env}: none of {list(metrics)} evaluated", fontsize=9)
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
                      info: RunInfo) -> dict[str, Path]:
    """Write ``<suite>.csv``, ``.md`` and ``.png`` into ``directory``, all or nothing.

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
    png = io.BytesIO()  # everything is rendered before the first file is replaced
    plot_leaderboard(df, png)
    rendered = {"csv": df.to_csv(index=False), "md": to_markdown(df, info), "png": png.getvalue()}
    atomic_write_group({final[ext]: rendered[ext] for ext in EXTENSIONS})
    return final
