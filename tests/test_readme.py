"""The README's code blocks, run as a reader pastes them: every Python block in order in one
namespace, the custom-task module and its shell block for real (tiny model), and every other shell
command parsed by the entry point it names (those train the default model for minutes)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

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
