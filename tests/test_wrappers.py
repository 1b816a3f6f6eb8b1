"""TextActions: whole replies on the token-level envs, the same reward and info as token steps."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import textenv
from textenv.rewards import RewardError
from textenv.wrappers import TextActions


@pytest.mark.parametrize("env_id", textenv.ENV_IDS)
def test_check_env_passes_on_every_registered_env(env_id):
    env = TextActions(gym.make(env_id, model="tiny"))
    check_env(env, skip_render_check=True)
    assert isinstance(env.action_space, gym.spaces.Text) and env.action_space.contains(env.action_space.sample())


@pytest.mark.parametrize("dense", [False, True])
def test_a_reply_scores_as_its_tokens_do(dense):
    """The reply's tokens then EOS, stepped one by one on a second env, give the same reward total,
    text and reward parts."""
    text_env = TextActions(gym.make("TextCount-v0", model="tiny", dense_reward=dense))
    token_env = gym.make("TextCount-v0", model="tiny", dense_reward=dense)
    _, info_a = text_env.reset(seed=3)
    _, info_b = token_env.reset(seed=3)
    assert info_a["prompt"] == info_b["prompt"]
    reply = " 40 41 42 43"
    obs, reward, terminated, truncated, info = text_env.step(reply)
    tok = token_env.unwrapped.tokenizer
    total = 0.0
    for t in [*tok(reply, add_special_tokens=False)["input_ids"], token_env.unwrapped.setup.eos_token_id]:
        obs_b, r, term_b, trunc_b, info_b = token_env.step(t)
        total += r
    assert terminated and term_b and not truncated
    assert reward == pytest.approx(total) and info["text"] == info_b["text"]
    assert info["reward_parts"] == info_b["reward_parts"] and info["dropped_tokens"] == 0
    np.testing.assert_array_equal(obs["input_ids"], obs_b["input_ids"])


def test_overlong_empty_and_bad_replies():
    env = TextActions(gym.make("TextCount-v0", model="tiny", max_new_tokens=4))
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(" 1 2 3 4 5 6 7 8 9 10")
    assert truncated and not terminated and info["reply_tokens"] == 4 and info["dropped_tokens"] > 0
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("")
    assert terminated and info["text"] == "" and info["reply_tokens"] == 0
    env.reset(seed=0)
    with pytest.raises(TypeError, match="reply string"):
        env.step(17)
    env.step(" 5")  # the refused action changed nothing: the episode goes on
    with pytest.raises(gym.error.ResetNeeded):
        env.step(" 6")
    with pytest.raises(TypeError, match="wraps a textenv env"):
        TextActions(gym.make("CartPole-v1"))


def test_a_reward_that_raises_leaves_no_half_played_reply():
    def broken(completions):
        raise ZeroDivisionError("oops")

    env = TextActions(gym.make("TextCount-v0", model="tiny", reward=broken))
    obs0, _ = env.reset(seed=0)
    with pytest.raises(RewardError, match="oops"):
        env.step(" 1 2 3")
    base = env.unwrapped
    assert base._generated == [] and not base._done
    np.testing.assert_array_equal(base._obs()["input_ids"], obs0["input_ids"])
