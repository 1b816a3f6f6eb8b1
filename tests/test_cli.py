"""Every command-line entry point answers --help (a subprocess each: what a user runs)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module,flag", [
    ("textenv", "--policy"),
    ("evals.run", "--policy"),
    ("evals.benchmarks.rollout", "--num-envs"),
    ("evals.benchmarks.vs_trl", "--samples"),
    ("textenv.rewards.sentiment", "train"),
])
def test_help(module, flag):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-1000:]
    assert flag in out.stdout


@pytest.mark.parametrize("args, flag", [
    (["--iterations", "0"], "iterations"),
    (["--minibatch-size", "0"], "minibatch_size"),
    (["--checkpoint-every", "0"], "checkpoint_every"),
    (["--lr", "-1"], "lr"),
    (["--env", "NoSuchEnv-v0"], "NoSuchEnv"),
])
def test_bad_ppo_flags_are_one_line_errors_and_write_nothing(tmp_path, args, flag):
    proc = subprocess.run([sys.executable, "-m", "agents.ppo", "--preset", "tiny", "--runs", str(tmp_path / "runs"),
                           *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _one_line_error(proc, flag):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("module, args, flag", [
    ("agents.sft", ["--model", "tiny", "--env", "TextCount-v0", "--epochs", "0"], "epochs"),
    ("agents.sft", ["--model", "/nonexistent", "--env", "TextCount-v0"], "/nonexistent"),
    ("agents.reward_model", ["--model", "tiny", "--env", "TextCount-v0", "--epochs", "0"], "epochs"),
    ("agents.ppo", ["--preset", "tiny", "--device", "cuda"], "cuda"),
    ("agents.ppo", ["--preset", "tiny", "--model", "/nonexistent"], "/nonexistent"),
    ("agents.ppo", ["--preset", "tiny", "--max-new-tokens", "0"], "max_new_tokens"),
    ("agents.ppo", ["--preset", "tiny", "--exp-name", "/../../x"], "plain name"),
    ("evals.run", ["--model", "tiny", "--only", "--policy", "random", "--reward-model", "bad"], "TASK=PATH"),
    ("textenv", ["--env", "TextCount-v0", "--model", "tiny", "--max-new-tokens", "0"], "max_new_tokens"),
])
def test_bad_input_to_every_cli_is_one_line_and_writes_nothing(tmp_path, module, args, flag):
    out = ["--out", str(tmp_path / "out")] if module != "agents.ppo" and module != "textenv" else []
    runs = ["--runs", str(tmp_path / "runs")] if module == "agents.ppo" else []
    proc = subprocess.run([sys.executable, "-m", module, *args, *out, *runs], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path)
    _one_line_error(proc, flag)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written anywhere


@pytest.mark.parametrize("module, args", [
    ("agents.sft", ["--model", "tiny", "--env", "TextCount-v0"]),
    ("agents.reward_model", ["--model", "tiny", "--env", "TextCount-v0"]),
    ("agents.pipeline", ["--model", "tiny", "--env", "TextCount-v0"]),
])
def test_out_never_replaces_or_fills_a_folder_of_the_users(tmp_path, module, args):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    if module != "agents.pipeline":
        (mine / "data").mkdir()  # the folder itself is the checkpoint target
    proc = subprocess.run([sys.executable, "-m", module, *args, "--out", str(mine)], capture_output=True, text=True,
                          timeout=180)
    _one_line_error(proc, "not a")
    assert sorted(p.name for p in mine.rglob("*")) == (["notes.txt"] if module == "agents.pipeline"
                                                         else ["data", "notes.txt"])


def test_the_demo_cli_names_the_registered_envs_and_refuses_unknown_ones():
    """``--env`` takes any id (a user's ``module:Env-vN`` too, see test_readme); its help names the
    built-ins, and an unknown id is one line before any model loads."""
    import dataclasses

    import textenv
    from textenv.__main__ import DemoConfig, main

    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(DemoConfig)}["env"]
    assert all(env_id in help_text for env_id in textenv.ENV_IDS)
    with pytest.raises(ValueError, match="'Nope-v0' is not a registered env id"):
        main(["--env", "Nope-v0"])


def test_parse_config_sequences_extend_and_bools_stand_alone():
    from dataclasses import dataclass

    from textenv.cli import arg, parse_config

    @dataclass(frozen=True)
    class Config:
        xs: tuple[str, ...] = arg(("a",), "strings")
        ns: tuple[int, ...] | None = arg(None, "ints or None")
        flag: bool = arg(False, "a switch")
        on: bool = arg(True, "on by default")

    assert parse_config(Config, []) == Config()
    got = parse_config(Config, ["--xs", "b", "c", "--xs", "d", "--ns", "1", "2", "--flag", "--on", "false"])
    assert got == Config(xs=("b", "c", "d"), ns=(1, 2), flag=True, on=False)
    assert isinstance(got.xs, tuple) and isinstance(got.ns, tuple)  # the field's own type, hashable
    with pytest.raises(SystemExit):
        parse_config(Config, ["--ns", "x"])


def test_evals_run_flags_map_onto_the_suite_config():
    import dataclasses

    from evals.run import SUITES, RunConfig, suite_config

    quick = SUITES["quick"].config
    assert suite_config(RunConfig()) == dataclasses.replace(quick, device="auto")  # the CLI's default device
    cfg = suite_config(RunConfig(envs=("TextSentiment-v0",), policies=("base,ppo-task",), limit=16,
                                 metrics=("reward", "length")))
    assert cfg.envs == ("TextSentiment-v0",) and cfg.limit == 16 and cfg.metrics == ("reward", "length")
    assert [p.partition("=")[0] for p in cfg.policies] == ["base", "ppo-task"]
    only = suite_config(RunConfig(only=True, policy=("mine=some/path", "random"), model="tiny",
                                  reward_model=("TextCount-v0=rm",)))
    assert only.policies == ("mine=some/path", "random") and only.model == "tiny"
    assert only.reward_models == {**quick.reward_models, "TextCount-v0": "rm"}
    assert suite_config(RunConfig(model="tiny")).policies[0] == "base=tiny"  # the base entry follows --model
    with pytest.raises(ValueError, match="unknown policy names"):
        suite_config(RunConfig(policies=("nope",)))


@pytest.mark.parametrize("module, flags, match", [
    ("agents.ppo", ["--seed", "-1"], "seed must be an integer >= 0"),
    ("agents.sft", ["--device", "gpu"], "unknown device 'gpu'"),
    ("agents.reward_model", ["--model", ""], "model must be a model name or a directory"),
    ("agents.pipeline", ["--env", "Text Count"], "env must be an env id"),
    ("evals.run", ["--device", "tpu0"], "unknown device 'tpu0'"),
    ("agents.ppo", ["--keep-best"], "keep_best needs eval_every"),
    ("agents.sft", ["--epochs", "0"], "epochs must be >= 1"),
])
def test_every_config_checks_its_run_context_when_parsed(module, flags, match):
    """Model, seed, device, precision and env are one base dataclass's fields, checked in
    ``__post_init__``: a bad value is the one-line error when the flags are parsed, before any model,
    data or output directory is touched (and the same error from the Python API)."""
    import importlib

    from textenv.cli import parse_config
    from textenv.context import RunContext

    mod = importlib.import_module(module)
    cls = next(v for k, v in vars(mod).items() if k.endswith("Config") and isinstance(v, type)
               and issubclass(v, RunContext) and v.__module__ in (module, "agents.ppo_config"))
    with pytest.raises(ValueError, match=match):
        parse_config(cls, flags)


@pytest.mark.parametrize("module", ["agents.ppo", "agents.sft", "agents.reward_model", "agents.pipeline", "evals.run"])
def test_every_entry_point_help_is_formatted(module):
    """Audit #15: a ``%`` in a help text ("~30% slower") made argparse print a raw dict."""
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-1000:]
    assert "{'option_strings'" not in out.stdout and "--seed" in out.stdout


def test_percent_in_a_help_text_is_shown_literally(capsys):
    from dataclasses import dataclass

    from textenv.cli import arg, parse_config

    @dataclass(frozen=True)
    class Config:
        share: float = arg(0.5, "share of the batch, 50% by default (%(default)s is not a template)")

    with pytest.raises(SystemExit) as exc:
        parse_config(Config, ["--help"], prog="x")
    assert exc.value.code == 0
    assert "50% by default (%(default)s is not a template) (default: 0.5)" in " ".join(capsys.readouterr().out.split())
