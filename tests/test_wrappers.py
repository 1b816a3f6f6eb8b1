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


class _CountingTokenizer:
    """The env's tokenizer, counting the characters it is asked to tokenise."""

    def __init__(self, tok):
        self.tok, self.chars = tok, []

    def __call__(self, text, **kwargs):
        self.chars.append(len(text))
        return self.tok(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_a_reply_longer_than_the_budget_could_hold_is_refused_before_tokenising():
    from textenv.wrappers import REPLY_CHARS_PER_TOKEN

    env = TextActions(gym.make("TextCount-v0", model="tiny", max_new_tokens=4))
    twin = TextActions(gym.make("TextCount-v0", model="tiny", max_new_tokens=4))
    limit = max(REPLY_CHARS_PER_TOKEN * 4, env.action_space.max_length)
    obs0, _ = env.reset(seed=0)
    twin.reset(seed=0)
    setup = env.unwrapped.setup
    spy = setup.tokenizer = _CountingTokenizer(setup.tokenizer)
    for reply in ("7" * (limit + 1), " 1 2" * 2_500_000):  # the second is 10 MB
        with pytest.raises(ValueError, match=f"reply has {len(reply):,} characters.*at most {limit:,}"):
            env.step(reply)
    assert spy.chars == []  # refused before tokenising
    np.testing.assert_array_equal(env.unwrapped._obs()["input_ids"], obs0["input_ids"])
    reply = " 1 2" * (limit // 4)  # at the limit: played, the rest dropped as before
    assert len(reply) == limit
    a, b = env.step(reply), twin.step(reply)
    assert spy.chars == [limit]
    assert a[1:4] == b[1:4] and a[3] and a[4]["dropped_tokens"] == b[4]["dropped_tokens"] > 0


def test_the_reply_limit_follows_the_tokens_left_in_a_turn():
    from textenv.wrappers import REPLY_CHARS_PER_TOKEN

    env = TextActions(gym.make("TextDialogue-v0", model="tiny", max_turn_tokens=8, max_new_tokens=40),
                      max_length=10)
    env.reset(seed=0, options={"index": 1})
    assert env.unwrapped.tokens_left() == 8
    for _ in range(3):
        env.unwrapped.step(7)
    assert env.unwrapped.tokens_left() == 5
    with pytest.raises(ValueError, match=f"at most {5 * REPLY_CHARS_PER_TOKEN}"):
        env.step("a" * (5 * REPLY_CHARS_PER_TOKEN + 1))
    _, _, _, _, info = env.step("a" * 5 * REPLY_CHARS_PER_TOKEN)
    assert info["turn"] == 0 and info["reply_tokens"] == 5
