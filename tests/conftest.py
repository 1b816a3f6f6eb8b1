"""Shared fixtures. Everything is offline: the Hub is never contacted (and is unreachable here)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gymnasium as gym  # noqa: E402
import pytest  # noqa: E402

import textenv  # noqa: E402,F401  (registers the envs)


@pytest.fixture
def count_env():
    """The synthetic task on the tiny model: the fastest env there is."""
    env = gym.make("TextCount-v0", model="tiny")
    yield env
    env.close()


def run_episode(env, actions, seed=0, options=None):
    """Step ``actions`` (cycled) until the episode ends; return (observations, rewards, last step)."""
    obs, info = env.reset(seed=seed, options=options)
    observations, rewards = [obs], []
    t = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(actions[t % len(actions)])
        observations.append(obs)
        rewards.append(reward)
        t += 1
        if terminated or truncated:
            return observations, rewards, (terminated, truncated, info)


def assert_refused_at_parse(main, argv, field, tmp_path, monkeypatch, capsys):
    """``main`` run as a command (``textenv.cli.cli``) from an empty ``tmp_path`` with ``argv``:
    exit 2, one ``error:`` line naming ``field``, and nothing written."""
    from textenv.cli import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli(main, argv)
    assert exc.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and field in errors[0], errors
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(autouse=True, scope="session")
def _sb3_logs_under_pytest_tmp(tmp_path_factory):
    """SB3's ``learn`` makes a logger folder per call (``$TMPDIR/SB3-<time>``) unless ``$SB3_LOGDIR``
    names one: keep the test runs' inside pytest's own temporary directories, which it prunes."""
    os.environ.setdefault("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3")))

def rollout_of(rewards, ended):
    """A hand-built :class:`agents.rollout.Rollout`: episode ``i`` has one action per reward of
    ``rewards[i]`` (the env's reward for it) and ended with EOS when ``ended[i]``."""
    import torch

    from agents.policy import EpisodeBatch
    from agents.rollout import Rollout

    batch = EpisodeBatch.from_episodes([[1]] * len(rewards), [[0] * len(r) for r in rewards], 0)
    width = batch.action_index.shape[1]
    padded = torch.tensor([list(r) + [0.0] * (width - len(r)) for r in rewards], dtype=torch.float64)
    zeros = torch.zeros(len(rewards), width)
    return Rollout(batch, zeros, zeros.clone(), padded, torch.tensor([sum(r) for r in rewards], dtype=torch.float64),
                   list(range(len(rewards))), [{"ended_with_eos": bool(e)} for e in ended])
