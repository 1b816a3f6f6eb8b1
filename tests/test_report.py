"""Leaderboard schema, rendering and the all-or-nothing write. Fast: no model, no git, tiny plots."""

import errno
import math
import os
import tempfile

import pandas as pd
import pytest

from evals import report
from evals.report import (
    COLUMNS,
    RunInfo,
    collect_run_info,
    make_frame,
    plot_leaderboard,
    read_leaderboard_csv,
    to_markdown,
    write_leaderboard,
)

NAN = math.nan


def row(policy, task, metric, value, lo=NAN, hi=NAN, n=50, hib=True):
    return dict(policy=policy, task=task, metric=metric, value=value, ci_low=lo, ci_high=hi, n=n,
                higher_is_better=hib)


@pytest.fixture
def rows():
    # summarize: ppo best on reward (higher), sft best on toxicity (lower), base/sft tie on rougeL,
    # random has a NaN rougeL, length is unranked. count: one policy per metric, a differing n.
    return [
        row("ppo", "summarize", "reward", 0.81234, 0.7, 0.9),
        row("base", "summarize", "reward", 0.5, 0.4, 0.6),
        row("sft", "summarize", "reward", 0.6, 0.5, 0.7),
        row("random", "summarize", "reward", -0.1, -0.2, 0.0),
        row("ppo", "summarize", "toxicity", 0.2, 0.1, 0.3, hib=False),
        row("base", "summarize", "toxicity", 0.3, 0.2, 0.4, hib=False),
        row("sft", "summarize", "toxicity", 0.05, 0.01, 0.09, hib=False),
        row("random", "summarize", "toxicity", 0.9, 0.8, 1.0, hib=False),
        row("ppo", "summarize", "rougeL", 0.2),
        row("base", "summarize", "rougeL", 0.3),
        row("sft", "summarize", "rougeL", 0.3),
        row("random", "summarize", "rougeL", NAN),
        row("ppo", "summarize", "length", 120.0),
        row("base", "summarize", "length", 40.0),
        row("sft", "summarize", "length", 41.0),
        row("random", "summarize", "length", 64.0),
        row("ppo", "count", "reward", 1.0, 0.9, 1.0, n=16),
        row("base", "count", "reward", 0.25, 0.1, 0.4, n=12),
    ]


@pytest.fixture
def info():
    return RunInfo(suite="smoke", commit="abc1234-dirty", date="2025-01-02T03:04:05+00:00", seeds=(0, 1, 2),
                   model="SmolLM2-135M", decoding={"top_p": 0.9, "temperature": 0.7}, limit=50,
                   versions={"python": "3.11.2", "torch": "2.5.0", "transformers": "4.46.0", "gymnasium": "1.0.0",
                             "evaluate": "0.4.3", "textenv": "0.1.0"},
                   budgets="ppo: 20k episodes; rm-bon: n=8")


def table_row(md, task, policy):
    section = md.split(f"## {task}\n", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| policy"))
    line = next(line for line in section.splitlines() if line.startswith(f"| {policy} |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    return dict(zip(names, [c.strip() for c in line.strip("|").split("|")], strict=True))


def test_columns_dtypes_and_order(rows):
    df = make_frame(reversed(rows))
    assert list(df.columns) == COLUMNS
    str_dtype = pd.Series(["x"]).astype(str).dtype
    assert all(df[c].dtype == str_dtype for c in ("policy", "task", "metric"))
    assert all(df[c].dtype == "float64" for c in ("value", "ci_low", "ci_high"))
    assert df["n"].dtype == "int64" and df["higher_is_better"].dtype == bool
    assert list(df[["task", "metric", "policy"]].itertuples(index=False)) == sorted(
        (r["task"], r["metric"], r["policy"]) for r in rows)
    pd.testing.assert_frame_equal(df, make_frame(rows))


def test_empty_frame_has_the_schema():
    df = make_frame([])
    assert list(df.columns) == COLUMNS and len(df) == 0 and df["n"].dtype == "int64"


@pytest.mark.parametrize("drop", ["n", "higher_is_better", "ci_low"])
def test_missing_column_is_named(rows, drop):
    rows[3].pop(drop)
    with pytest.raises(ValueError, match=drop):
        make_frame(rows)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("n", NAN, "'n'"), ("n", 2.5, "'n'"), ("higher_is_better", "maybe", "higher_is_better"),
    ("value", "abc", "'value'"), ("policy", "", "'policy'"),
])
def test_bad_values_raise(rows, field, value, match):
    rows[0][field] = value
    with pytest.raises(ValueError, match=match):
        make_frame(rows)


def test_duplicates_and_conflicting_directions_raise(rows):
    with pytest.raises(ValueError, match="duplicate"):
        make_frame(rows + [rows[0]])
    rows[0]["higher_is_better"] = False
    with pytest.raises(ValueError, match="reward"):
        make_frame(rows)


def test_csv_round_trip(rows, tmp_path):
    rows.append(row("NA", "summarize", "reward", 1 / 3, 0.1 + 0.2, 1e-17, n=7))  # "NA" must stay a name
    df = make_frame(rows)
    df.to_csv(tmp_path / "lb.csv", index=False)
    back = read_leaderboard_csv(tmp_path / "lb.csv")
    pd.testing.assert_frame_equal(back, df)
    assert math.isnan(back.loc[(back.policy == "random") & (back.metric == "rougeL"), "value"].item())


def test_markdown_header(rows, info):
    md = to_markdown(make_frame(rows), info)
    assert md.startswith("# Leaderboard: smoke\n")
    for text in ["abc1234-dirty", "2025-01-02T03:04:05+00:00", "0, 1, 2", "SmolLM2-135M",
                 "temperature=0.7, top_p=0.9", "limit per task: 50", "torch 2.5.0", "textenv 0.1.0",
                 "ppo: 20k episodes", "↑ higher is better", "↓ lower is better", "[ci_low, ci_high]"]:
        assert text in md, text


def test_markdown_bold_directions_ties_nan_unranked(rows, info):
    md = to_markdown(make_frame(rows), info, metrics=["reward", "toxicity", "rougeL", "length"])
    ppo, sft, base, rnd = (table_row(md, "summarize", p) for p in ("ppo", "sft", "base", "random"))
    assert ppo["reward ↑"] == "**0.812 [0.700, 0.900]**"  # higher is better: max
    assert base["reward ↑"] == "0.500 [0.400, 0.600]"
    assert sft["toxicity ↓"] == "**0.050 [0.010, 0.090]**"  # lower is better: min
    assert not ppo["toxicity ↓"].startswith("**") and not rnd["toxicity ↓"].startswith("**")
    assert base["rougeL ↑"] == sft["rougeL ↑"] == "**0.300**"  # tie: both bold, no CI given
    assert rnd["rougeL ↑"] == "n/a"
    assert "**" not in "".join(r["length"] for r in (ppo, sft, base, rnd))  # unranked: no bold, no arrow
    assert ppo["n"] == "50"
    assert table_row(md, "count", "base")["n"] == "12"


def test_markdown_nan_is_never_best_even_alone(info):
    df = make_frame([row("a", "t", "loss", NAN, hib=False), row("b", "t", "loss", NAN, hib=False)])
    md = to_markdown(df, info)
    assert "**" not in md.split("## t", 1)[1] and "| a | n/a | 50 |" in md


def test_markdown_is_deterministic(rows, info):
    a = to_markdown(make_frame(rows), info).encode()
    b = to_markdown(make_frame(list(reversed(rows))), info).encode()
    assert a == b


def test_collect_run_info_without_git(monkeypatch):
    def no_git(*args):
        raise FileNotFoundError("git")

    monkeypatch.setattr(report, "_git", no_git)
    info = collect_run_info("s", [3, 1], "tiny", {"temperature": 1.0}, None, "none")
    assert info.commit == "unknown" and info.seeds == (3, 1) and info.limit is None
    assert info.date.endswith("+00:00")
    assert set(info.versions) == {"python", "torch", "transformers", "gymnasium", "evaluate", "textenv"}
    assert "limit per task: all" in to_markdown(make_frame([row("a", "t", "m", 1.0)]), info)


def test_collect_run_info_marks_dirty(monkeypatch):
    monkeypatch.setattr(report, "_git", lambda *a: "abc1234" if a[0] == "rev-parse" else " M evals/report.py")
    assert collect_run_info("s", [0], "tiny", {}, 5).commit == "abc1234-dirty"
    monkeypatch.setattr(report, "_git", lambda *a: "abc1234" if a[0] == "rev-parse" else "")
    assert collect_run_info("s", [0], "tiny", {}, 5).commit == "abc1234"


def test_plot_rejects_unknown_metric(rows, tmp_path):
    with pytest.raises(ValueError, match="bleu"):
        plot_leaderboard(make_frame(rows), tmp_path / "x.png", metrics=["bleu"])


def test_write_leaderboard_writes_three_files(rows, info, tmp_path):
    df = make_frame(rows)
    paths = write_leaderboard(df, tmp_path / "lb", "smoke", info)
    assert {p.name for p in paths.values()} == {"smoke.csv", "smoke.md", "smoke.png"}
    assert sorted(os.listdir(tmp_path / "lb")) == ["smoke.csv", "smoke.md", "smoke.png"]
    pd.testing.assert_frame_equal(read_leaderboard_csv(paths["csv"]), df)
    assert paths["md"].read_text(encoding="utf-8") == to_markdown(df, info)
    assert paths["png"].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_write_leaderboard_failure_leaves_old_files(rows, info, tmp_path, monkeypatch):
    write_leaderboard(make_frame(rows), tmp_path, "smoke", info)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_plot(df, out, metrics=None):
        out.write(b"half a png")
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report, "plot_leaderboard", broken_plot)
    changed = make_frame([row("ppo", "summarize", "reward", 0.99)])
    with pytest.raises(RuntimeError, match="plot failed"):
        write_leaderboard(changed, tmp_path, "smoke", info)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # untouched, no temp files


def _replace_attempt(rows, info, tmp_path):
    """Write a leaderboard, then return its bytes and a frame whose rendering differs in all three files."""
    write_leaderboard(make_frame(rows), tmp_path, "smoke", info)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    return before, make_frame([*rows[:-1], row("base", "count", "reward", 0.75, 0.5, 0.9, n=12)])


def test_write_leaderboard_on_a_full_disk_keeps_the_old_three(rows, info, tmp_path, monkeypatch):
    """The PNG (written third) hits a full disk: its temporary file's writes go to /dev/full, whose
    writes fail with ENOSPC as a full disk's do. The CSV and Markdown used to be replaced already."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    before, changed = _replace_attempt(rows, info, tmp_path)
    real_mkstemp = tempfile.mkstemp

    def full_disk_for_the_png(*args, **kwargs):
        fd, path = real_mkstemp(*args, **kwargs)
        if ".png" in kwargs.get("prefix", ""):
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, fd)
            os.close(full)
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", full_disk_for_the_png)
    with pytest.raises(OSError) as raised:
        write_leaderboard(changed, tmp_path, "smoke", info)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # byte-identical, no temp files
    assert raised.value.errno == errno.ENOSPC
    assert "smoke.png" in str(raised.value) and "left as they were: free some space" in str(raised.value)


def test_write_leaderboard_refuses_a_folder_in_place_of_a_file_before_writing(rows, info, tmp_path):
    before, changed = _replace_attempt(rows, info, tmp_path)
    (tmp_path / "smoke.png").unlink()
    (tmp_path / "smoke.png").mkdir()
    del before["smoke.png"]
    with pytest.raises(IsADirectoryError) as raised:
        write_leaderboard(changed, tmp_path, "smoke", info)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke.csv", "smoke.md", "smoke.png"]
    assert "smoke.png exists and is a folder" in str(raised.value) and "remove it" in str(raised.value)


def test_write_leaderboard_puts_the_old_files_back_when_a_rename_fails(rows, info, tmp_path, monkeypatch):
    """The third rename fails after two files were replaced: the first two are put back (the one
    that did not exist before is removed again)."""
    before, changed = _replace_attempt(rows, info, tmp_path)
    (tmp_path / "smoke.md").unlink()
    del before["smoke.md"]
    real_replace = os.replace

    def png_rename_fails(src, dst):
        if str(dst).endswith("smoke.png") and ".tmp-" in str(src):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", png_rename_fails)
    with pytest.raises(OSError) as raised:
        write_leaderboard(changed, tmp_path, "smoke", info)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no backups or temp files left
    assert "were put back" in str(raised.value)


def test_write_leaderboard_sweeps_the_temporary_files_of_killed_writes(rows, info, tmp_path):
    write_leaderboard(make_frame(rows), tmp_path, "smoke", info)
    stale = [tmp_path / ".smoke.csv.tmp-k1ll3d", tmp_path / ".smoke.png.tmp-x", tmp_path / ".smoke.md.old-4242"]
    for path in stale:
        path.write_bytes(b"half")
    (tmp_path / ".other.csv.tmp-x").write_bytes(b"not ours")
    write_leaderboard(make_frame(rows), tmp_path, "smoke", info)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.tmp-x", "smoke.csv", "smoke.md", "smoke.png"]


def test_write_leaderboard_rejects_bad_suite(rows, info, tmp_path):
    with pytest.raises(ValueError, match="path separator"):
        write_leaderboard(make_frame(rows), tmp_path, "../smoke", info)
    with pytest.raises(ValueError, match="other"):
        write_leaderboard(make_frame(rows), tmp_path, "other", info)
    assert list(tmp_path.iterdir()) == []


def test_plot_has_a_reward_vs_kl_panel_and_no_empty_panels(tmp_path):
    """A task's KL panel is the reward-vs-KL picture where it has both; a metric without values is no panel."""
    summ, senti = "TextSummarize-v0", "TextSentiment-v0"
    rows = [row(p, summ, "reward", v, v - 0.1, v + 0.1) for p, v in (("base", 0.2), ("ppo", 0.4), ("bon", 0.3))]
    rows += [row(p, summ, "rougeL", v) for p, v in (("base", 0.2), ("ppo", 0.25))]
    rows += [row(p, summ, "kl_to_ref", v, v, v + 0.1, hib=False) for p, v in (("base", 0.0), ("ppo", 0.5))]
    rows += [row(p, summ, "bertscore", NAN) for p in ("base", "ppo")]
    rows += [row(p, senti, "reward", v) for p, v in (("base", 0.1), ("ppo", 0.6))]  # no KL there
    panels = plot_leaderboard(make_frame(rows), tmp_path / "x.png")
    assert panels == {senti: ["reward"], summ: ["rougeL", "reward vs KL"]}
    assert (tmp_path / "x.png").stat().st_size > 1000


def test_reward_model_accuracies_reach_the_leaderboard_header(tmp_path):
    import json

    from evals.report import RunInfo, to_markdown
    from evals.run import reward_model_notes

    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "metrics.json").write_text(json.dumps({
        "eval_split": "validation", "eval_pairs": 95, "eval/accuracy_before": 0.41, "eval/accuracy_after": 0.789,
        "eval/after/accuracy": 0.789, "eval/after/accuracy_length_matched": 0.762,
        "eval/after/pairs_length_matched": 42, "eval/after/accuracy/swap": 0.69, "eval/after/pairs/swap": 26}))
    notes = reward_model_notes({"TextSummarize-v0": str(rm), "TextSentiment-v0": str(tmp_path / "missing")})
    assert len(notes) == 1  # a task whose reward model is missing has no line
    assert "0.789 on 95 pairs" in notes[0] and "length-matched 0.762 on 42 pairs" in notes[0]
    assert "swap 0.69 (n=26)" in notes[0]
    info = RunInfo(suite="q", commit="x", date="d", seeds=(0,), model="m", decoding={}, limit=1, notes=tuple(notes))
    md = to_markdown(make_frame([row("a", "t", "reward", 1.0)]), info)
    assert "- reward model TextSummarize-v0: held-out (validation) pairwise accuracy 0.789" in md


def test_pass_at_k_columns_in_csv_markdown_and_plot(info, tmp_path):
    rows = [row(p, "TextReasoning-v0", m, v, v - 0.1, v + 0.1, n=32) for p, m, v in (
        ("base", "reward", 0.3), ("base", "accuracy", 0.25), ("base", "pass@4", 0.5),
        ("maj", "reward", 0.4), ("maj", "accuracy", 0.4))]
    rows += [row("base", "TextSummarize-v0", m, v) for m, v in (("reward", 0.2), ("rougeL", 0.2), ("accuracy", 0.0))]
    df = make_frame(rows)
    paths = write_leaderboard(df, tmp_path, "smoke", info)
    pd.testing.assert_frame_equal(read_leaderboard_csv(paths["csv"]), df)
    md = paths["md"].read_text(encoding="utf-8")
    base, maj = table_row(md, "TextReasoning-v0", "base"), table_row(md, "TextReasoning-v0", "maj")
    assert base["pass@4 ↑"] == "**0.500 [0.400, 0.600]**" and maj["pass@4 ↑"] == "—"
    assert maj["accuracy ↑"].startswith("**0.400") and "pass@k: unbiased estimator" in md
    assert "pass@k" not in to_markdown(make_frame([row("a", "t", "reward", 1.0)]), info)  # only when sampled
    # the sampled task gets accuracy and pass@k panels; a graded task's accuracy stays in the tables
    panels = plot_leaderboard(df, tmp_path / "x.png")
    assert panels == {"TextReasoning-v0": ["accuracy", "pass@4"], "TextSummarize-v0": ["rougeL"]}


def test_leaderboard_reads_in_the_order_a_reader_compares_and_shows_what_matters(info, tmp_path):
    """Rows and bars go base -> SFT -> best-of-n -> RL -> other -> baselines (not alphabetically);
    length is plotted (a reward won by shortening replies shows) and carries no direction arrow;
    summaries' reward, which equals ROUGE-L, is one panel, not two; and the reference, whose ROUGE
    against itself is 1, is named instead of drawn as a bar that squashes the real policies."""
    names = ["random", "reference", "ppo-task (= sft)", "ppo-rm", "sft", "mine", "rm", "base"]
    values = {"random": 0.01, "reference": 1.0, "ppo-task (= sft)": 0.18, "ppo-rm": 0.14, "sft": 0.18,
              "mine": 0.16, "rm": 0.18, "base": 0.15}
    rows = [row(p, "sum", m, values[p]) for p in names for m in ("reward", "rougeL")]
    rows += [row(p, "sum", "length", 20.0 + i) for i, p in enumerate(names)]
    df = make_frame(rows)
    assert report.policy_order(names) == ["base", "sft", "rm", "ppo-task (= sft)", "ppo-rm", "mine", "random",
                                          "reference"]
    md = to_markdown(df, info)
    order = [line.split(" | ")[0].removeprefix("| ") for line in md.splitlines() if line.startswith("| ")][1:]
    assert order == report.policy_order(names)
    assert "| length |" in md and "length ↑" not in md
    drawn = []
    real_bars = report._bars

    def spy(ax, sub, task, metric, *a):
        real_bars(ax, sub, task, metric, *a)
        drawn.append((metric, [t.get_text() for t in ax.get_yticklabels()], ax.get_xlim(), ax.get_title()))

    monkey = pytest.MonkeyPatch()
    monkey.setattr(report, "_bars", spy)
    try:
        panels = plot_leaderboard(df, tmp_path / "x.png")
    finally:
        monkey.undo()
    assert panels == {"sum": ["reward", "length"]}  # rougeL repeats reward: not drawn twice
    reward = dict((m, (labels, xlim, title)) for m, labels, xlim, title in drawn)["reward"]
    assert reward[0] == [p for p in report.policy_order(names) if p != "reference"]
    assert reward[1][1] < 0.5 and "reference: 1.000" in reward[2]  # the axis is the real policies'
    assert "length ↑" not in dict((m, t) for m, _, _, t in drawn)["length"]


def delta(policy, task, metric, value, lo, hi, start, p, n=50, hib=True):
    return {**row(policy, task, f"delta/{metric}", value, lo, hi, n=n, hib=hib), "start": start, "p_value": p}


@pytest.fixture
def reasoning_rows():
    """A reasoning table as the suite writes it: every metric the task computes, and a Δ per trained row."""
    task = "TextReasoning-v0"
    out = []
    for p, acc in (("base", 0.2), ("sft", 0.5), ("vote", 0.55), ("ppo-task", 0.572), ("random", 0.0)):
        out += [row(p, task, "accuracy", acc, acc - 0.07, acc + 0.07, n=128),
                row(p, task, "reward", acc, acc - 0.07, acc + 0.07, n=128),
                row(p, task, "length", 1.0, 1.0, 1.0, n=128), row(p, task, "win_rate", 0.6, 0.5, 0.7, n=128)]
        if p not in ("vote", "random"):
            out += [row(p, task, "pass@4", acc + 0.1, acc, acc + 0.2, n=128),
                    row(p, task, "kl_to_ref", 0.3, 0.2, 0.4, n=128, hib=False)]
    return out + [delta("sft", task, "accuracy", 0.3, 0.25, 0.35, "base", 0.0001, n=128),
                  delta("vote", task, "accuracy", 0.05, -0.02, 0.11, "sft", 0.2, n=128),
                  delta("ppo-task", task, "accuracy", 0.054, 0.012, 0.097, "sft", 0.0123, n=128)]


def test_reasoning_table_shows_its_headline_and_the_paired_difference(reasoning_rows, info):
    """The reasoning table used to show all 16 metrics alphabetically; now accuracy, pass@k, Δ vs
    start, length, KL in that order, the rest named as in the CSV, and each trained row's Δ with its
    start, interval and verdict: better only where the paired interval excludes 0."""
    md = to_markdown(make_frame(reasoning_rows), info)
    section = md.split("## TextReasoning-v0\n", 1)[1]
    header = next(line for line in section.splitlines() if line.startswith("| policy"))
    assert header == "| policy | accuracy ↑ | pass@4 ↑ | Δ accuracy vs start | length | kl_to_ref ↓ | n |"
    ppo, sft, vote, base = (table_row(md, "TextReasoning-v0", p) for p in ("ppo-task", "sft", "vote", "base"))
    assert ppo["Δ accuracy vs start"] == "+0.054 [+0.012, +0.097] vs sft: better (p=0.012)"
    assert sft["Δ accuracy vs start"] == "+0.300 [+0.250, +0.350] vs base: better (p=0.0001)"
    assert vote["Δ accuracy vs start"] == "+0.050 [-0.020, +0.110] vs sft: no clear difference (p=0.2)"
    assert base["Δ accuracy vs start"] == "—" and base["n"] == ppo["n"] == "128"
    assert "Also in the CSV: reward, win_rate." in section
    assert "Not computed here (no meaning for this task's answers): bertscore, bleu, chrf" in section
    assert "a row is better or worse only when that interval excludes 0" in md


def test_a_worse_row_and_a_lower_is_better_headline(info):
    rows = [row(p, "TextCount-v0", "reward", v) for p, v in (("a", 0.5), ("b", 0.4), ("c", 0.5))]
    rows += [delta("b", "TextCount-v0", "reward", -0.1, -0.15, -0.05, "a", 0.001),
             delta("c", "TextCount-v0", "reward", 0.0, 0.0, 0.0, "a", 1.0)]
    md = to_markdown(make_frame(rows), info)
    b, c = (table_row(md, "TextCount-v0", p)["Δ reward vs start"] for p in ("b", "c"))
    assert b == "-0.100 [-0.150, -0.050] vs a: worse (p=0.001)"
    assert c == "0.000 [0.000, 0.000] vs a: no clear difference (p=1)"
    loss = [row("a", "t", "loss", 1.0, hib=False), delta("b", "t", "loss", -0.2, -0.3, -0.1, "a", 0.01, hib=False)]
    cell = table_row(to_markdown(make_frame(loss), info, metrics=["loss"]), "t", "b")["Δ loss vs start"]
    assert cell.endswith("vs a: better (p=0.01)")  # a lower loss is better


def test_csv_round_trip_with_paired_rows_and_an_old_csv_still_reads(reasoning_rows, tmp_path):
    df = make_frame(reasoning_rows)
    assert list(df.columns) == COLUMNS and COLUMNS[-2:] == ["start", "p_value"]
    df.to_csv(tmp_path / "lb.csv", index=False)
    back = read_leaderboard_csv(tmp_path / "lb.csv")
    pd.testing.assert_frame_equal(back, df)
    d = back[back.metric == "delta/accuracy"].set_index("policy")
    assert d.loc["ppo-task", "start"] == "sft" and d.loc["ppo-task", "p_value"] == 0.0123
    assert (back.loc[back.metric == "accuracy", "start"] == "").all()
    assert back.loc[back.metric == "accuracy", "p_value"].isna().all()
    # a leaderboard written before the paired columns existed
    df[df.metric != "delta/accuracy"].drop(columns=["start", "p_value"]).to_csv(tmp_path / "old.csv", index=False)
    old = read_leaderboard_csv(tmp_path / "old.csv")
    pd.testing.assert_frame_equal(old, make_frame([r for r in reasoning_rows if "start" not in r]))


@pytest.mark.parametrize(("change", "match"), [
    ({"start": ""}, "must name its start"),
    ({"p_value": 1.5}, "p_value"),
])
def test_paired_rows_are_checked(change, match):
    with pytest.raises(ValueError, match=match):
        make_frame([{**delta("b", "t", "reward", 0.1, 0.0, 0.2, "a", 0.5), **change}])
    with pytest.raises(ValueError, match="only delta/ rows name a start"):
        make_frame([{**row("b", "t", "reward", 0.1), "start": "a"}])


def test_plot_draws_the_headline_and_the_paired_differences(reasoning_rows, tmp_path):
    drawn = {}
    real_bars = report._bars

    def spy(ax, sub, task, metric, *a):
        real_bars(ax, sub, task, metric, *a)
        drawn[metric] = [t.get_text() for t in ax.get_yticklabels()]

    monkey = pytest.MonkeyPatch()
    monkey.setattr(report, "_bars", spy)
    try:
        panels = plot_leaderboard(make_frame(reasoning_rows), tmp_path / "x.png")
    finally:
        monkey.undo()
    assert panels == {"TextReasoning-v0": ["accuracy", "pass@4", "delta/accuracy", "length", "reward vs KL"]}
    assert drawn["delta/accuracy"] == ["sft vs base", "vote vs sft", "ppo-task vs sft"]


def test_seed_rows_sit_with_their_policy_summary_first():
    from evals.report import policy_order

    got = policy_order(["ppo-task@seed1", "random", "ppo-task (mean of 2 seeds)", "zeta", "sft", "ppo-task@seed0"])
    assert got == ["sft", "ppo-task (mean of 2 seeds)", "ppo-task@seed0", "ppo-task@seed1", "zeta", "random"]
