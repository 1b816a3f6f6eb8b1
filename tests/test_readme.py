"""The README's code blocks, run as a reader pastes them: every Python block in order in one
namespace, the custom-task module and its shell block (tiny model), and every other shell command in
order with ``$TEXTENV_DEFAULT_MODEL=tiny``, so "the default model" is the tiny one (minutes, not an
hour); a fast test also parses each against its entry point's config."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parent.parent / "README.md"
CUSTOM = "# my_shout.py"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def commands() -> list[list[str]]:
    """Each shell line as argv, comments and continuation-free lines only ("..." lines skipped)."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv and "..." not in argv:
                out.append(argv)
    return out


@pytest.mark.slow
def test_python_blocks_run_as_pasted(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    ran = 0
    for code in blocks("python"):
        if code.startswith(CUSTOM):  # a module to save, not a REPL block: the next test runs it
            continue
        exec(compile(code, f"README block {ran}", "exec"), namespace)  # noqa: S102 - our own README
        ran += 1
    assert ran >= 6


@pytest.mark.slow
def test_custom_task_block_works_in_every_entry_point(tmp_path):
    """A user's task, saved as the README shows it, runs through gym.make, check_env, the demo CLI,
    agents.ppo and evals.run, each taking the ``module:Env-vN`` id."""
    (module,) = [b for b in blocks("python") if b.startswith(CUSTOM)]
    (tmp_path / "my_shout.py").write_text(module)
    check = ("import gymnasium as gym; from gymnasium.utils.env_checker import check_env; "
             "env = gym.make('my_shout:Shout-v0', model='tiny', size=8); check_env(env.unwrapped); "
             "print(len(env.unwrapped.examples))")
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.split()[-1] == "8", out.stderr[-2000:]
    (shell,) = [b for b in blocks("bash") if "my_shout:Shout-v0" in b]
    for line in shell.splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "python"
        out = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (line, out.stderr[-2000:])
    table = (tmp_path / "leaderboards" / "quick.md").read_text()
    assert "## my_shout:Shout-v0" in table and "| base |" in table and "| random |" in table
    assert list((tmp_path / "runs").rglob("final"))  # agents.ppo trained and saved


def _suite_table(argv: list[str]) -> str:
    suite = argv[argv.index("--suite") + 1] if "--suite" in argv else "quick"
    return f"leaderboards/{suite}.md"


def _policy_names(argv: list[str]) -> list[str]:
    names = [argv[i + 1].partition("=")[0] for i, a in enumerate(argv) if a == "--policy"]
    if "--policies" in argv:
        names += argv[argv.index("--policies") + 1].split(",")
    return names


@pytest.mark.slow
def test_default_model_commands_run_on_tiny(tmp_path):
    """Every ``.venv/bin/python -m`` line of the README, in order, in one directory (later lines use
    what earlier ones trained), with the default model swapped for the tiny one: the env setting, and
    the default's name in paths it wrote. Each exits 0 and an eval writes its table with the rows it
    named, except ``--device cuda`` without a GPU, which must fail in one line naming the problem."""
    from textenv.models import SMOLLM2

    env = {**os.environ, "TEXTENV_DEFAULT_MODEL": "tiny"}
    ran = 0
    for argv in commands():
        if argv[0] != ".venv/bin/python":
            continue
        argv = [sys.executable, *(a.replace(SMOLLM2, "tiny") for a in argv[1:])]
        out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        ran += 1
        if "cuda" in argv and not torch.cuda.is_available():
            assert out.returncode == 2, (argv, out.stderr[-2000:])
            assert out.stderr.strip().splitlines()[-1].startswith("error: ValueError: device 'cuda'"), out.stderr[-500:]
            continue
        if argv[2:] == ["evals.run", "--suite", "qa"]:  # the tiny random model's answers never share a word
            # with the gold: GRPO gets one reward (F1 0) for every episode, says so and stops; the table keeps
            # the other rows and names the missing one, and the command exits 1
            assert out.returncode == 1 and "PPO stopped: every episode" in out.stderr, (argv, out.stderr[-3000:])
            table = (tmp_path / "leaderboards" / "qa.md").read_text()
            assert "| sft " in table and "not evaluated: ppo-task on TextQA-v0" in table
            continue
        assert out.returncode == 0, (argv, out.stderr[-3000:])
        if argv[2] == "evals.run":
            table = (tmp_path / _suite_table(argv)).read_text()
            for name in _policy_names(argv):
                assert f"| {name} " in table, (argv, name)
    assert ran >= 14
    assert (tmp_path / "runs" / "pipeline" / "TextSentiment-v0__tiny" / "ppo_rm").is_dir()
    assert "| ppo-task " in (tmp_path / "leaderboards" / "dialogue.md").read_text()


def test_every_other_shell_command_parses():
    """Flags drift: each ``python -m`` line of the README must parse with its entry point's config."""
    from agents import pipeline, ppo, reward_model, sft
    from evals import run
    from textenv import __main__ as demo
    from textenv.cli import parse_config

    configs = {"agents.ppo": (ppo.PPOConfig, ppo.PRESETS), "agents.sft": (sft.SFTConfig, sft.PRESETS),
               "agents.reward_model": (reward_model.RewardModelConfig, reward_model.PRESETS),
               "agents.pipeline": (pipeline.PipelineConfig, None), "evals.run": (run.RunConfig, None),
               "textenv": (demo.DemoConfig, None)}
    targets = re.findall(r"^([a-z-]+):", (README.parent / "Makefile").read_text(), flags=re.M)
    seen = 0
    for argv in commands():
        if argv[0] == "make":
            assert argv[1] in targets, argv
        elif "-m" in argv and argv[argv.index("-m") + 1] in configs:
            cls, presets = configs[argv[argv.index("-m") + 1]]
            parse_config(cls, argv[argv.index("-m") + 2:], presets)
            seen += 1
    assert seen >= 10


def test_every_flag_the_readme_names_is_a_field_of_an_entry_point():
    """The prose's flags (``--length-band LO HI``, ``--trust-config-code``...) must be accepted by some
    command: a renamed or removed field fails here, not in a reader's terminal."""
    import dataclasses

    from agents import pipeline, ppo, reward_model, sft
    from evals import run
    from textenv import __main__ as demo

    fields = {f"--{f.name.replace('_', '-')}" for cls in (ppo.PPOConfig, sft.SFTConfig, reward_model.RewardModelConfig,
                                                           pipeline.PipelineConfig, run.RunConfig, demo.DemoConfig)
              for f in dataclasses.fields(cls)} | {"--preset", "--help", "--debug"}
    external = {"--index-url", "--no-deps", "--multi_gpu", "--num_processes"}  # pip's and accelerate's
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", README.read_text(encoding="utf-8")))
    assert named - fields - external == set()
