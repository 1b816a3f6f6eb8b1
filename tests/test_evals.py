"""The eval suite on the tiny model: the frame, determinism, sharding, bad input."""

import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from evals.generate import Decoding, majority
from evals.report import COLUMNS, read_leaderboard_csv
from evals.suite import SuiteConfig, evaluate_suite, generate_all, score_generations
from textenv.models import load_model
from textenv.rewards.verifier import extract_answer

DEC = Decoding(temperature=0.7, max_new_tokens=8, batch_size=4)


def _cfg(**kw):
    base = dict(envs=("TextCount-v0",), model="tiny", policies=("base=tiny", "random", "reference"), limit=10,
                decoding=DEC, n_boot=200, progress=False)
    return SuiteConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def table():
    return evaluate_suite(_cfg())


def test_frame_columns_and_types(table):
    assert list(table.columns) == COLUMNS
    assert table["value"].dtype == "float64" and table["n"].dtype == "int64"
    assert table["higher_is_better"].dtype == bool
    assert set(table["policy"]) == {"base", "random", "reference"}
    metrics = set(table["metric"])
    assert {"reward", "rouge1", "rougeL", "bleu", "chrf", "bertscore", "kl_to_ref", "ref_perplexity",
            "distinct1", "length", "win_rate"} <= metrics
    row = table[(table.policy == "reference") & (table.metric == "reward")].iloc[0]
    assert row.value == 1.0 and row.n == 10  # the reference continues the count perfectly
    kl = table[(table.policy == "base") & (table.metric == "kl_to_ref")].iloc[0]
    assert abs(kl.value) < 1e-5 and not kl.higher_is_better  # the base policy is its own reference
    assert (table.ci_low <= table.value + 1e-12).all() and (table.value <= table.ci_high + 1e-12).all()


def test_two_runs_give_the_same_table(table):
    pd.testing.assert_frame_equal(evaluate_suite(_cfg()), table)


def test_missing_and_corrupt_checkpoints_are_named_and_the_rest_is_computed(tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    failures = []
    df = evaluate_suite(_cfg(policies=("base=tiny", f"gone={tmp_path / 'nope'}", f"bad={corrupt}")),
                        failures=failures)
    assert set(df.policy) == {"base"}
    messages = {f.policy: f.message for f in failures}
    assert "nope" in messages["gone"] and "does not exist" in messages["gone"]
    assert "corrupt" in messages["bad"]


def test_checkpoints_are_checked_for_what_they_hold_not_only_their_format(tmp_path):
    import json

    from safetensors.torch import save_file

    from agents.policy import LMActorCritic
    from textenv.io import atomic_dir

    env = gym.make("TextCount-v0", model="tiny")
    good = LMActorCritic.from_pretrained("tiny", tokenizer=env.unwrapped.tokenizer)
    dirs = {}
    for name in ("wrong_tensors", "fewer_layers", "no_value_head", "good"):
        with atomic_dir(tmp_path / name) as tmp:
            good.save_pretrained(tmp)
        dirs[name] = tmp_path / name
    save_file({"nothing.weight": torch.zeros(2)}, dirs["wrong_tensors"] / "model.safetensors")
    config = json.loads((dirs["fewer_layers"] / "config.json").read_text())
    (dirs["fewer_layers"] / "config.json").write_text(json.dumps({**config, "n_layer": config["n_layer"] - 1}))
    (dirs["no_value_head"] / "value_head.safetensors").unlink()
    leftover = tmp_path / ".checkpoint.tmp-abc123"
    leftover.mkdir()
    good.save_pretrained(leftover)  # complete files, but the write never finished: no COMPLETE marker
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    good.save_pretrained(unfinished)
    (unfinished / "COMPLETE").unlink()  # what a save killed before its last file leaves
    failures = []
    policies = tuple(f"{k}={v}" for k, v in {**dirs, "leftover": leftover, "unfinished": unfinished}.items())
    df = evaluate_suite(_cfg(policies=policies), failures=failures)
    assert set(df.policy) == {"good"}
    messages = {f.policy: f.message for f in failures}
    assert "do not match its config.json" in messages["wrong_tensors"] and "missing" in messages["wrong_tensors"]
    assert "unexpected" in messages["fewer_layers"]
    assert "no value_head.safetensors" in messages["no_value_head"]
    assert "temporary folder of an interrupted write" in messages["leftover"]
    assert "no COMPLETE marker" in messages["unfinished"]


def test_empty_split_is_reported_and_other_tasks_still_run():
    gym.register(id="TextCountEmptyTest-v0", entry_point="textenv.env:TextEnv",
                 vector_entry_point="textenv.vector:TextVectorEnv",
                 kwargs={"task": "textenv.task_factories:count", "sizes": {"test": 0}})
    failures = []
    df = evaluate_suite(_cfg(envs=("TextCountEmptyTest-v0", "TextCount-v0"), policies=("random",)),
                        failures=failures)
    assert set(df.task) == {"TextCount-v0"}
    assert any("no examples in split 'test'" in f.message for f in failures)


def test_policy_that_only_emits_eos(tmp_path):
    env = gym.make("TextCount-v0", model="tiny")
    tok, model = load_model("tiny", tokenizer=env.unwrapped.tokenizer)
    with torch.no_grad():  # a final norm that outputs one direction, and EOS's embedding along it
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.transformer.wte.weight[tok.eos_token_id].zero_()
        model.transformer.wte.weight[tok.eos_token_id, 0] = 100.0
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    df = evaluate_suite(_cfg(policies=("base=tiny", f"mute={tmp_path}")))
    mute = df[df.policy == "mute"].set_index("metric")
    assert mute.loc["length", "value"] == 0 and mute.loc["reward", "value"] == 0
    assert mute.loc["rougeL", "value"] == 0 and "distinct1" not in mute.index


def test_cli_bad_task_and_metric_exit_with_a_message(tmp_path):
    for args, expected in ((["--envs", "NoSuchTask-v0"], "unknown task 'NoSuchTask-v0'"),
                           (["--metrics", "reward,bogus"], "unknown metrics ['bogus']")):
        out = subprocess.run([sys.executable, "-m", "evals.run", "--model", "tiny", "--only", "--policy", "random",
                              "--out", str(tmp_path), *args], capture_output=True, text=True, timeout=300)
        assert out.returncode == 2 and expected in out.stderr, out.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_two_process_accelerate_run_equals_one_process(tmp_path):
    args = ["-m", "evals.run", "--model", "tiny", "--envs", "TextCount-v0", "--only", "--policy", "base=tiny",
            "--policy", "random", "--policy", "reference", "--limit", "12", "--progress", "false"]
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args,
                          "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    counts = [int(m) for m in re.findall(r"process [01]/2 generated (\d+) completions", two.stderr)]
    assert len(counts) == 2 and min(counts) > 0, two.stderr[-2000:]  # really sharded: both did work
    pd.testing.assert_frame_equal(read_leaderboard_csv(tmp_path / "one" / "quick.csv"),
                                  read_leaderboard_csv(tmp_path / "two" / "quick.csv"))


def test_metrics_narrow_the_table():
    df = evaluate_suite(_cfg(policies=("base=tiny", "random"), metrics=("reward", "kl_to_ref")))
    assert set(df.metric) == {"reward", "kl_to_ref"}
    assert set(df[df.metric == "kl_to_ref"].policy) == {"base"}


def _tiny_checkpoints(tmp_path, task="TextCount-v0"):
    """A copy of the base weights, a perturbed copy, and a random scalar-head reward model, all
    with ``task``'s test-split tokenizer."""
    from transformers import AutoModelForSequenceClassification

    from agents.policy import LMActorCritic

    tok = gym.make(task, model="tiny", split="test").unwrapped.tokenizer
    same = LMActorCritic.from_pretrained("tiny", tokenizer=tok)
    same.save_pretrained(tmp_path / "same")
    with torch.no_grad():
        for p in same.model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    same.save_pretrained(tmp_path / "moved")
    torch.manual_seed(0)
    config = same.model.config.__class__.from_dict({**same.model.config.to_dict(), "num_labels": 1})
    rm = AutoModelForSequenceClassification.from_config(config)
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    return tmp_path / "same", tmp_path / "moved", tmp_path / "rm"


def test_kl_to_ref_is_estimated_for_other_checkpoints(tmp_path):
    same, moved, _ = _tiny_checkpoints(tmp_path)
    df = evaluate_suite(_cfg(policies=("base=tiny", f"same={same}", f"moved={moved}"), metrics=("kl_to_ref",)))
    kl = df.set_index("policy")["value"]
    assert kl["base"] == 0.0  # the base against itself is not estimated: it is the same model
    assert abs(kl["same"]) < 1e-5  # the estimator on identical weights loaded separately
    assert kl["moved"] > 0.05


def test_best_of_n_keeps_the_reward_models_pick(tmp_path):
    from textenv.rewards import Completion, resolve

    *_, rm_dir = _tiny_checkpoints(tmp_path)
    cfg = _cfg(policies=("base=tiny", "bon=bon:tiny"), reward_models={"TextCount-v0": str(rm_dir)})
    gens = generate_all(cfg)
    base = {g.index: g for g in gens if g.policy == "base"}
    bon = {g.index: g for g in gens if g.policy == "bon"}
    assert set(base) == set(bon) == set(range(10))
    rm = resolve("classifier", path=str(rm_dir))
    for i, g in bon.items():
        # its first candidate is the base policy's own sample (same row seed), so the pick scores >= it
        assert g.scores["rm_score"] >= base[i].scores["rm_score"] - 1e-6
        rescored = rm([Completion(prompt=g.prompt, text=g.text)])[0]
        assert g.scores["rm_score"] == pytest.approx(rescored, abs=1e-5)
        assert g.logprobs is None and "kl_to_ref" not in g.scores
    assert any(bon[i].text != base[i].text for i in bon)  # it did pick other samples sometimes
    df = score_generations(gens, cfg)
    means = df[df.metric == "rm_score"].set_index("policy")["value"]
    assert means["bon"] > means["base"]


def test_scores_of_a_big_batch_equal_scores_one_by_one(tmp_path):
    """Batches over 8 generations are scored in length-sorted chunks; every score must come back
    to its own generation."""
    from agents.policy import LMActorCritic, Sampling
    from evals.generate import reference_nll, sample_logprobs

    same, moved, _ = _tiny_checkpoints(tmp_path, "TextSummarize-v0")
    cfg = _cfg(envs=("TextSummarize-v0",), policies=(f"moved={moved}",), limit=12,
               decoding=Decoding(temperature=0.7, max_new_tokens=6, batch_size=12))
    gens = generate_all(cfg)
    assert len(gens) == 12 and len({len(g.prompt_ids) for g in gens}) > 1
    tok = gym.make("TextSummarize-v0", model="tiny", split="test").unwrapped.tokenizer
    sampling = Sampling(temperature=0.7)
    policy = LMActorCritic.from_pretrained(str(moved), tokenizer=tok, sampling=sampling)
    base = LMActorCritic.from_pretrained("tiny", tokenizer=tok, sampling=sampling)
    eos = tok.eos_token_id
    for g in gens:
        alone = sample_logprobs(policy, [g], base.model)[0]
        assert g.scores["kl_to_ref"] == pytest.approx(float(np.mean(np.subtract(g.logprobs[:len(alone)], alone))),
                                                      abs=1e-5)
        own = sample_logprobs(policy, [g], policy.model)[0]  # every action, the EOS too, where it was sampled
        assert len(own) == len(g.logprobs) == len(g.positions) and own == pytest.approx(g.logprobs, abs=1e-4)
    batched = reference_nll(policy, gens, eos)
    assert batched == pytest.approx([reference_nll(policy, [g], eos)[0] for g in gens], abs=1e-5)


def test_k_samples_per_prompt_and_majority_vote(table):
    """K=4 samples: sample 0 is the single-sample run's generation bit for bit, pass@4 counts
    prompts; the vote policy draws the same 4 streams and keeps their majority answer."""
    cfg = _cfg(policies=("base=tiny", "maj=vote:tiny"), samples={"TextCount-v0": 4})
    gens = generate_all(cfg)
    base = {(g.index, g.sample): g for g in gens if g.policy == "base"}
    assert set(base) == {(i, j) for i in range(10) for j in range(4)}
    for i, g in {g.index: g for g in generate_all(_cfg(policies=("base=tiny",)))}.items():
        assert (base[i, 0].token_ids, base[i, 0].logprobs) == (g.token_ids, g.logprobs)
    assert any(base[i, 1].text != base[i, 0].text for i in range(10))  # the other samples are other draws
    maj = {g.index: g for g in gens if g.policy == "maj"}
    assert set(maj) == set(range(10))
    for i, g in maj.items():
        texts = [base[i, j].text for j in range(4)]
        assert g.text == texts[majority([extract_answer(t).strip() for t in texts])]
        assert g.logprobs is None and g.sample == 0
    df = score_generations(gens, cfg).set_index(["policy", "metric"])
    for m in ("reward", "accuracy", "pass@4", "kl_to_ref", "ref_perplexity", "rougeL", "bertscore", "distinct1"):
        assert df.loc[("base", m), "n"] == 10, m  # prompts, not samples
    assert df.loc[("base", "pass@4"), "value"] >= df.loc[("base", "accuracy"), "value"]
    assert abs(df.loc[("base", "kl_to_ref"), "value"]) < 1e-5
    # ref_perplexity does not depend on the samples: the K=1 table's value
    one = table.set_index(["policy", "metric"])
    assert df.loc[("base", "ref_perplexity"), "value"] == one.loc[("base", "ref_perplexity"), "value"]
    assert {"reward", "accuracy", "win_rate"} <= set(df.loc["maj"].index)
    assert "kl_to_ref" not in df.loc["maj"].index and "pass@4" not in df.loc["maj"].index


def test_per_task_limits_and_pairs_skipped_by_design():
    """``limits`` sizes one task's test set (reasoning's binary accuracy needs more prompts);
    ``skip`` leaves a (policy, task) pair out without a failure; bad items fail at once."""
    failures = []
    df = evaluate_suite(_cfg(limits={"TextCount-v0": 3}, skip=(("random", "TextCount-v0"),)), failures=failures)
    assert not failures and set(df.policy) == {"base", "reference"}
    assert set(df[df.metric == "reward"].n) == {3}
    for bad in (dict(limits=("TextCount-v0=3",)), dict(limits={"TextCount-v0": 0}), dict(skip=("random",)),
                dict(skip=(("random", ""),))):
        with pytest.raises(ValueError, match="expected"):
            evaluate_suite(_cfg(**bad))


def test_a_ppo_row_that_kept_its_start_is_named_so(tmp_path):
    """A keep-best run that kept iteration 0 is the SFT weights: the table must not call it RL."""
    import json

    from evals.run import kept_start_notes, stage_notes

    for task, iteration in (("TextCount-v0", 0), ("TextSentiment-v0", 7)):
        (tmp_path / task).mkdir()
        (tmp_path / task / "ppo_run.json").write_text(json.dumps({"kept": "best", "iteration": iteration}))
    notes = kept_start_notes(("base=tiny", f"ppo-task={tmp_path}/{{task}}"), ("TextCount-v0", "TextSentiment-v0"))
    assert list(notes) == [("ppo-task", "TextCount-v0")] and "(= sft)" in notes[("ppo-task", "TextCount-v0")]
    lines = stage_notes([{"env": "TextCount-v0", "sft_resources": {"seconds": 12.4, "peak_gb": 1.5},
                          "sft_metrics": "x"}, {"env": "TextSentiment-v0", "sft_metrics": "cached"}])
    assert lines == ["trained for TextCount-v0: sft 12 s (1.50 GB)"]


def test_quick_suite_rows_fit_their_tasks():
    """Every quick-suite pair is either evaluated or skipped by design: no reward-model rows on the
    verifier task, majority vote only where answers are extracted, ppo-rm only where it is trained."""
    from evals.run import QUICK_STAGES, SUITES

    cfg = SUITES["quick"].config
    assert set().union(*(SUITES[s].config.envs for s in ("quick", "qa", "dialogue", "tools"))) == set(QUICK_STAGES)
    assert cfg.samples["TextReasoning-v0"] == 4
    skip = set(cfg.skip)
    for task, stages in QUICK_STAGES.items():
        if task not in cfg.envs:
            continue
        assert (("ppo-rm", task) in skip) == (stages["ppo_reward"] == "task")
        assert (("rm", task) in skip) == (stages.get("reward_model") is False)
    assert ("vote", "TextReasoning-v0") not in skip


def test_evaluating_a_given_checkpoint_trains_nothing_unless_asked(tmp_path, monkeypatch, caplog):
    """``evals.run --policy mine=...`` used to start the quick suite's hour of training for its
    missing checkpoints. Now only a run without --policy (or with --make) trains, and it says what
    and for how long first; otherwise the missing suite rows are left out and named."""
    import logging

    from evals import run

    monkeypatch.chdir(tmp_path)  # no runs/pipeline here: every suite checkpoint is missing
    trained, seen = [], []
    monkeypatch.setattr(run, "make_checkpoints", lambda tasks, *a, **k: trained.append(tasks) or [])
    monkeypatch.setattr(run, "generate_all", lambda cfg, **k: seen.append(cfg) or [])
    args = ["--envs", "TextCount-v0", "--out", str(tmp_path / "lb")]
    caplog.set_level(logging.INFO)
    assert run.main([*args, "--policy", "mine=smollm2-135m"]) == 1  # (no generations: stubbed)
    assert trained == []
    skipped = set(seen[-1].skip)
    assert {("sft", "TextCount-v0"), ("ppo-task", "TextCount-v0"), ("rm", "TextCount-v0")} <= skipped
    assert "not evaluated: sft on TextCount-v0" in caplog.text and "add --make" in caplog.text
    assert run.main([*args, "--policy", "mine=smollm2-135m", "--make"]) == 1
    assert trained == [("TextCount-v0",)]
    caplog.clear()
    assert run.main(args) == 1  # the suite's own run trains, and says so before it starts
    assert trained[-1] == ("TextCount-v0",) and "training the suite's missing checkpoints" in caplog.text
    assert run.main([*args, "--no-make"]) == 1 and len(trained) == 2
    with pytest.raises(ValueError, match="contradict"):
        run.main([*args, "--make", "--no-make"])


def test_policies_narrows_the_suite_but_keeps_added_policies():
    """``--policies base,random --policy ppo=...`` used to drop the ppo row silently."""
    from evals.run import RunConfig, suite_config

    cfg = suite_config(RunConfig(envs=("TextCount-v0",), policies=("base,random",), policy=("ppo=some/run",)))
    assert [p.partition("=")[0] for p in cfg.policies] == ["base", "random", "ppo"]
    with pytest.raises(ValueError, match=r"unknown policy names \['nope'\]"):
        suite_config(RunConfig(policies=("base,nope",)))


def test_tasks_take_a_users_module_env_id(tmp_path, monkeypatch):
    """``module:Env-vN`` ids import their module first, as gym.make does (evals used to refuse them)."""
    from evals.suite import check_config
    from textenv.tasks import env_spec, task_of

    (tmp_path / "my_counts.py").write_text(
        "import gymnasium as gym\n"
        "gym.register(id='MyCount-v0', entry_point='textenv.env:TextEnv', "
        "vector_entry_point='textenv.vector:TextVectorEnv', "
        "kwargs={'task': 'textenv.task_factories:count', 'shown': 4})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert env_spec("my_counts:MyCount-v0").id == "MyCount-v0"
    assert task_of("my_counts:MyCount-v0").load("test")[0].text.count(" ") == 4  # "Count:" + 4 numbers
    check_config(_cfg(envs=("my_counts:MyCount-v0",)))
    df = evaluate_suite(_cfg(envs=("my_counts:MyCount-v0",), policies=("base=tiny",), limit=4))
    assert set(df.task) == {"my_counts:MyCount-v0"}
    for bad, match in (("no_such_module:X-v0", "cannot import 'no_such_module'"), ("Nope-v0", "module:Env-vN")):
        with pytest.raises(ValueError, match=match):
            check_config(_cfg(envs=(bad,)))


def test_a_suite_checkpoint_built_with_other_settings_counts_as_missing(tmp_path, monkeypatch, caplog):
    """The eval suite used to evaluate any finished folder under runs/pipeline/, whatever settings
    built it; now it asks the pipeline, which rebuilds a stage whose recorded recipe differs."""
    import json

    from agents import pipeline
    from evals import run
    from evals.suite import SuiteConfig
    from textenv.io import atomic_dir

    def fake(stage, out):
        with atomic_dir(out) as tmp:
            (tmp / "w.txt").write_text("x")
        return {}

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "_train_stage", fake)
    pipeline.run_pipeline(run._pipeline_config("TextCount-v0", "tiny", "tiny"))
    root = run.PIPELINE.format(task="TextCount-v0")
    cfg = SuiteConfig(envs=("TextCount-v0",), model="tiny", policies=(f"sft={run.PIPELINE}/sft",
                                                                      f"ppo-task={run.PIPELINE}/ppo_task"))
    assert run.missing_checkpoints(cfg, "tiny") == []
    recipes = json.loads((tmp_path / root / "stages.json").read_text())
    recipes["sft"]["config"]["seed"] = 7  # as if an older pipeline had trained SFT on another seed
    (tmp_path / root / "stages.json").write_text(json.dumps(recipes))
    assert run.missing_checkpoints(cfg, "tiny") == [("sft", "TextCount-v0", f"{root}/sft"),
                                                     ("ppo-task", "TextCount-v0", f"{root}/ppo_task")]
    assert "config.seed: 7 -> 0" in caplog.text
    assert run.missing_checkpoints(cfg) == []  # without the suite's preset: finished folders only


EV = ["--envs", "TextCount-v0", "--model", "tiny", "--only", "--policy", "random", "--limit", "4", "--metrics",
      "reward", "length", "--progress", "false"]


def _fails_before_any_work(argv, monkeypatch, capsys) -> str:
    """Run ``evals.run`` as the command does; return its one-line error after checking the exit code
    is 2 and that nothing was trained or generated first."""
    from evals import run
    from textenv.cli import cli

    def no_work(*args, **kwargs):
        raise AssertionError("training or evaluation started before the arguments were checked")

    monkeypatch.setattr(run, "generate_all", no_work)
    monkeypatch.setattr(run, "make_checkpoints", no_work)
    with pytest.raises(SystemExit) as exit_:
        cli(run.main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("flags, expected", [
    (["--out", "{tmp}/a_file"], "a_file is a file, not a folder"),
    (["--out", "{tmp}/a_file/sub"], "a_file is a file, not a folder"),
    (["--out", "{tmp}", "--name", "../x"], "holds a path separator"),
    (["--out", "{tmp}", "--name", ".hidden"], "starts with '.'"),
    (["--out", "{tmp}", "--name", "two\nlines"], "holds a control character"),
    (["--out", "{tmp}", "--name", "x" * 201], "longer than 200 bytes"),
    (["--out", "{tmp}", "--name", "lb"], "lb.png exists and is a folder"),
])
def test_an_unwritable_leaderboard_fails_before_the_evaluation(tmp_path, monkeypatch, capsys, flags, expected):
    """``--out <a file>`` and ``--name ../x`` used to fail only after the whole evaluation."""
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "lb.png").mkdir()
    err = _fails_before_any_work([*EV, *(f.replace("{tmp}", str(tmp_path)) for f in flags)], monkeypatch, capsys)
    assert expected in err and ("--out" in err or "--name" in err or "remove it" in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "lb.png"]  # nothing made


@pytest.mark.parametrize("name", ["two\nlines", "a\rb", "tab\there", "esc\x1b[1m", "a\u2028b", "rtl\u202eb",
                                  "back\\slash", " padded"])
def test_policy_names_that_break_the_table_are_refused_when_parsed(tmp_path, monkeypatch, capsys, name):
    """A ``--policy`` name with a newline used to split its leaderboard row in two, after the run."""
    from evals.suite import check_config

    err = _fails_before_any_work([*EV, "--out", str(tmp_path), "--policy", f"{name}=tiny"], monkeypatch, capsys)
    assert "bad policy name" in err and "--policy NAME=PATH" in err, err
    assert list(tmp_path.iterdir()) == []
    check_config(_cfg(policies=("a|b=tiny", "ppo (v2)=tiny")))  # a '|' is escaped in the table: allowed


@pytest.mark.parametrize("flags, expected", [
    (["--reward-model", "TextCount-v0"], "bad reward model 'TextCount-v0': expected TASK=PATH"),
    (["--reward-model", "=rm"], "bad reward model '=rm': expected TASK=PATH"),
    (["--samples", "TextCount-v0=two"], "bad samples 'TextCount-v0=two': expected TASK=K with K an integer in 1..64"),
    (["--samples", "TextCount-v0=2,TextCount-v0=0"], "bad samples 'TextCount-v0=0': expected TASK=K"),
    (["--start", "random"], "bad --start 'random': expected NAME=START"),
])
def test_key_value_flags_are_parsed_once_and_a_bad_one_is_named_before_any_work(tmp_path, monkeypatch, capsys,
                                                                                  flags, expected):
    """``--reward-model``, ``--samples`` and ``--start`` become typed values when the flags are read
    (``evals.run.parse_specs``); a malformed ``--reward-model`` used to fail only after training."""
    from evals.run import RunConfig, parse_specs, suite_config

    err = _fails_before_any_work([*EV, "--out", str(tmp_path), *flags], monkeypatch, capsys)
    assert expected in err, err
    assert list(tmp_path.iterdir()) == []
    assert parse_specs(["a=b=c", "a=d"], "x", "K=V") == (("a", "b=c"), ("a", "d"))  # the first '=' splits, in order
    cfg = suite_config(RunConfig(reward_model=("TextSentiment-v0=mine",), samples=("TextReasoning-v0=8",)))
    assert cfg.reward_models["TextSentiment-v0"] == "mine" and cfg.samples == {"TextReasoning-v0": 8}  # flags win


def test_a_failing_policy_is_named_and_the_other_rows_are_written(tmp_path, capsys):
    """A policy that fails (a missing checkpoint) used to crash the run when it reported the failure
    (``Failure.task`` had become ``Failure.env``), losing the table."""
    from evals import run

    code = run.main([*EV, "--policy", f"gone={tmp_path / 'nope'}", "--out", str(tmp_path / "lb"), "--name", "lb"])
    assert code == 1
    assert set(read_leaderboard_csv(tmp_path / "lb" / "lb.csv").policy) == {"random"}
    assert "not evaluated: policy gone on TextCount-v0" in (tmp_path / "lb" / "lb.md").read_text()
    assert "failed: policy 'gone' on TextCount-v0" in capsys.readouterr().err


def test_each_policy_gets_its_paired_difference_from_its_start(tmp_path):
    """Tables used to leave "did it beat its start?" to two overlapping marginal intervals. Now each
    row with a start in the run gets delta/<the task's first headline metric> over the same prompts:
    the mean of per-prompt differences, which on one sample per prompt is the difference of means."""
    same, moved, _ = _tiny_checkpoints(tmp_path)
    cfg = _cfg(policies=("base=tiny", f"same={same}", f"moved={moved}", "maj=vote:tiny", "random", "reference"),
               starts=(("same", "base"), ("moved", "base")))
    df = evaluate_suite(cfg)
    deltas = df[df.metric == "delta/reward"].set_index("policy")
    assert set(deltas.index) == {"same", "moved", "maj"}  # base, random, reference have no start
    assert dict(deltas["start"]) == {"same": "base", "moved": "base", "maj": "base"}  # maj: vote:tiny samples base
    reward = df[df.metric == "reward"].set_index("policy")["value"]
    assert deltas.loc["moved", "value"] == pytest.approx(reward["moved"] - reward["base"], abs=1e-12)
    assert deltas.loc["moved", "ci_low"] <= deltas.loc["moved", "value"] <= deltas.loc["moved", "ci_high"]
    assert (deltas["n"] == 10).all() and deltas["higher_is_better"].all()
    same_row = deltas.loc["same"]  # the base weights loaded again sample the same tokens: exactly 0 [0, 0], p = 1
    assert (same_row.value, same_row.ci_low, same_row.ci_high, same_row.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (df[~df.metric.str.startswith("delta/")]["start"] == "").all()


def test_starts_are_inferred_from_samplers_and_checkpoint_records(tmp_path):
    """bon:/vote: X starts from the policy evaluating X; an SFT checkpoint from the model its
    sft_config.json names; a pipeline's PPO copy from its run's config.json model (ppo_run.json names
    the run); a checkpoint inside a PPO run likewise; the config's starts win."""
    import json

    from evals.suite import policy_starts, recorded_start

    def folder(path, **files):
        path.mkdir(parents=True)
        for name, content in files.items():
            (path / name.replace("_json", ".json")).write_text(json.dumps(content))
        return path

    for task in ("TextCount-v0", "TextSentiment-v0"):
        sft = folder(tmp_path / task / "sft", sft_config_json={"model": "tiny", "env": task})
        run = folder(tmp_path / task / "ppo_runs" / "r1", config_json={"model": str(sft)})
        folder(tmp_path / task / "ppo_task", ppo_run_json={"run": str(run), "kept": "best", "iteration": 3})
        folder(run / "final", trainer_state_json={"iteration": 3})
    assert recorded_start(tmp_path / "TextCount-v0" / "sft") == "tiny"
    assert recorded_start(tmp_path / "TextCount-v0" / "ppo_task") == str(tmp_path / "TextCount-v0" / "sft")
    assert recorded_start(tmp_path / "nowhere") is None and recorded_start("tiny") is None
    t = f"{tmp_path}/{{task}}"
    cfg = _cfg(policies=("base=tiny", f"sft={t}/sft", f"rl={t}/ppo_task", f"inner={t}/ppo_runs/r1/final",
                         f"bon=bon:{t}/sft", f"vote=vote:{t}/sft", "bon-base=bon:tiny", "random", "reference"))
    expected = {"sft": "base", "rl": "sft", "inner": "sft", "bon": "sft", "vote": "sft", "bon-base": "base"}
    assert policy_starts(cfg, "TextSentiment-v0") == expected
    (tmp_path / "TextCount-v0" / "ppo_runs" / "r1" / "config.json").write_text("{broken")
    assert policy_starts(cfg, "TextCount-v0") == {k: v for k, v in expected.items() if k not in ("rl", "inner")}
    named = _cfg(policies=cfg.policies, starts=(("rl", "base"), ("random", "reference")))
    assert policy_starts(named, "TextSentiment-v0") == {**expected, "rl": "base", "random": "reference"}


def test_reasoning_computes_no_n_gram_metrics():
    """ROUGE-2 of a one-number answer was 0.000 for every row; n-gram overlap, distinct-n and
    BERTScore are no longer computed for TextReasoning-v0 (they are for other tasks)."""
    df = evaluate_suite(_cfg(envs=("TextReasoning-v0",), policies=("base=tiny", "random", "reference"), limit=4,
                             samples={"TextReasoning-v0": 2}))
    assert not set(df.metric) & {"rouge1", "rouge2", "rougeL", "bleu", "chrf", "distinct1", "distinct2", "bertscore"}
    assert {"accuracy", "pass@2", "reward", "length", "kl_to_ref"} <= set(df.metric)


def test_start_flag_and_the_suites_own_starts(tmp_path, monkeypatch, capsys):
    from evals.run import SUITES, RunConfig, suite_config

    quick = suite_config(RunConfig(envs=("TextCount-v0",)))
    assert dict(quick.starts) == {"sft": "base", "rm": "sft", "vote": "sft", "ppo-task": "sft", "ppo-rm": "sft"}
    assert dict(SUITES["qa"].config.starts) == {"sft": "base", "ppo-task": "sft"}
    narrowed = suite_config(RunConfig(policies=("base,ppo-task",), policy=("mine=x",), start=("mine=base",)))
    assert narrowed.starts == (("mine", "base"),)  # ppo-task's start sft is not evaluated: no pair
    err = _fails_before_any_work([*EV, "--out", str(tmp_path), "--start", "random=nope"], monkeypatch, capsys)
    assert "bad start random=nope: 'nope' is not a policy of the run" in err and "--start" in err
    err = _fails_before_any_work([*EV, "--out", str(tmp_path), "--start", "random"], monkeypatch, capsys)
    assert "bad --start 'random': expected NAME=START" in err
    assert list(tmp_path.iterdir()) == []


def test_the_written_leaderboard_carries_the_paired_difference(tmp_path):
    from evals import run

    code = run.main([*EV, "--policy", "base=tiny", "--policy", "maj=vote:tiny", "--policy", "mine=tiny",
                     "--start", "mine=random", "--out", str(tmp_path), "--name", "lb"])
    assert code == 0
    df = read_leaderboard_csv(tmp_path / "lb.csv")
    starts = df[df.metric == "delta/reward"].set_index("policy")["start"]
    assert dict(starts) == {"maj": "base", "mine": "random"}
    md = (tmp_path / "lb.md").read_text()
    assert "| policy | reward ↑ | Δ reward vs start | length | n |" in md
    assert re.search(r"\| maj \| [^|]+ \| 0\.000 \[0\.000, 0\.000\] vs base: no clear difference \(p=1\) \|", md), md


def test_seeds_expand_the_rl_rows_with_their_starts_and_skips_and_train_every_seed(tmp_path, monkeypatch):
    from evals import run
    from evals.run import RunConfig, rl_seeds_of, suite_config

    cfg = suite_config(RunConfig(seeds=(0, 1, 2)))
    names = [p.partition("=")[0] for p in cfg.policies]
    assert [n for n in names if n.startswith("ppo")] == ["ppo-task@seed0", "ppo-task@seed1", "ppo-task@seed2",
                                                          "ppo-rm@seed0", "ppo-rm@seed1", "ppo-rm@seed2"]
    paths = dict(p.split("=", 1) for p in cfg.policies if p.startswith("ppo-task"))
    assert paths["ppo-task@seed0"].endswith("/ppo_task") and paths["ppo-task@seed2"].endswith("/ppo_task_seed2")
    assert ("ppo-task@seed1", "sft") in cfg.starts and ("ppo-rm@seed2", "sft") in cfg.starts
    assert ("ppo-rm@seed1", "TextSummarize-v0") in cfg.skip and ("ppo-rm", "TextSummarize-v0") not in cfg.skip
    assert rl_seeds_of(cfg) == (0, 1, 2) and rl_seeds_of(suite_config(RunConfig())) == ()
    with pytest.raises(ValueError, match="--seeds must be distinct"):
        RunConfig(seeds=(1, 1))
    # the suite's missing checkpoints are trained with every seed, from one SFT start
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(run, "make_checkpoints", lambda envs, *a, **k: calls.append(k.get("rl_seeds")) or [])
    monkeypatch.setattr(run, "generate_all", lambda cfg, **k: [])
    run.main(["--envs", "TextCount-v0", "--policies", "sft,ppo-task", "--seeds", "0", "1", "--out", str(tmp_path)])
    assert calls == [(0, 1)]


def test_seed_rows_give_the_mean_over_runs_with_an_interval_over_runs():
    from evals.suite import seed_rows

    def row(policy, metric, value, **kw):
        return {"policy": policy, "task": "T-v0", "metric": metric, "value": value, "ci_low": value - 0.1,
                "ci_high": value + 0.1, "n": 64, "higher_is_better": True, **kw}

    rows = [row("ppo@seed0", "reward", 0.5), row("ppo@seed1", "reward", 0.5), row("ppo@seed2", "reward", 0.5),
            row("ppo@seed0", "delta/reward", 0.1, start="sft", p_value=0.01),
            row("ppo@seed1", "delta/reward", -0.1, start="sft", p_value=0.02),
            row("ppo@seed1", "length", 3.0), row("sft", "reward", 0.4)]
    out = {r["metric"]: r for r in seed_rows(rows)}
    assert set(out) == {"reward", "delta/reward"}  # length: one seed only, nothing to summarise
    assert out["reward"]["policy"] == "ppo (mean of 3 seeds)" and out["reward"]["n"] == 3
    assert (out["reward"]["value"], out["reward"]["ci_low"], out["reward"]["ci_high"]) == (0.5, 0.5, 0.5)
    delta = out["delta/reward"]
    assert delta["value"] == pytest.approx(0.0) and delta["start"] == "sft" and delta["n"] == 2
    assert delta["ci_low"] == pytest.approx(-0.1) and delta["ci_high"] == pytest.approx(0.1)  # the runs disagree
