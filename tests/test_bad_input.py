"""Bad input to the single env: a clear error naming the problem, and the env still usable."""

import math

import gymnasium as gym
import numpy as np
import pytest

from textenv.core import PromptTruncationWarning
from textenv.rewards import RewardError


@pytest.mark.parametrize("action,error,match", [
    (10**9, ValueError, "out of range"),
    (-1, ValueError, "out of range"),
    (3.0, TypeError, "integer token id"),
    ("7", TypeError, "integer token id"),
    (True, TypeError, "integer token id"),
    (np.array([1, 2]), ValueError, "shape"),
    (None, TypeError, "integer token id"),
])
def test_bad_actions_are_refused_and_change_nothing(count_env, action, error, match):
    obs, _ = count_env.reset(seed=0)
    with pytest.raises(error, match=match):
        count_env.step(action)
    obs2, *_ = count_env.step(np.int64(5))  # numpy ints and 0-d arrays are fine
    p = count_env.unwrapped.setup.max_prompt_tokens
    np.testing.assert_array_equal(obs2["input_ids"][:p], obs["input_ids"][:p])
    assert obs2["input_ids"][p] == 5 and obs2["attention_mask"][p + 1:].sum() == 0
    count_env.step(np.array(6))


def test_step_before_reset_and_after_the_end(count_env):
    env = count_env.unwrapped
    with pytest.raises(gym.error.ResetNeeded, match="before reset"):
        env.step(5)
    env.reset(seed=0)
    env.step(env.setup.eos_token_id)
    with pytest.raises(gym.error.ResetNeeded, match="after the episode ended"):
        env.step(5)
    env.reset(seed=0)
    env.step(5)


@pytest.mark.parametrize("options,error,match", [
    ({"idx": 1}, ValueError, "unknown reset options"),
    ({"index": 10**6}, IndexError, "out of range"),
    ({"index": -1}, IndexError, "out of range"),
    ({"index": 1.5}, TypeError, "must be an int"),
])
def test_bad_reset_options(count_env, options, error, match):
    with pytest.raises(error, match=match):
        count_env.reset(options=options)
    obs, info = count_env.reset(options={"index": 2})
    assert info["index"] == 2


def test_unknown_task_keyword_and_split():
    with pytest.raises(TypeError, match="bad keyword argument for task.*colour"):
        gym.make("TextCount-v0", model="tiny", colour="red")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        gym.make("TextCount-v0", model="tiny", split="dev")
    with pytest.raises(ValueError, match="unknown reward 'nope'|'nope'"):
        gym.make("TextCount-v0", model="tiny", reward="nope")


def test_empty_split_is_a_clear_error():
    with pytest.raises(ValueError, match="no examples in split 'test'"):
        gym.make("TextCount-v0", model="tiny", sizes={"test": 0}, split="test")


def test_long_prompt_is_truncated_with_a_warning_not_a_crash():
    env = gym.make("TextSummarize-v0", model="tiny", max_prompt_tokens=16, max_new_tokens=4)
    with pytest.warns(PromptTruncationWarning, match="keeping its last 16 tokens"):
        obs, info = env.reset(seed=0)
    assert info["prompt_truncated"] and obs["attention_mask"][:16].all()
    tail = env.unwrapped.tokenizer.decode(obs["input_ids"][:16])
    assert tail.endswith("of this paper.")  # the instruction at the end survives
    _, _, _, _, info = env.step(env.unwrapped.setup.eos_token_id)
    assert info["prompt_truncated"]


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_reward_is_named_and_the_episode_can_be_retried(count_env, value):
    state = {"value": value}

    def my_reward(completions):
        return [state["value"]] * len(completions)

    env = gym.make("TextCount-v0", model="tiny", reward=my_reward)
    env.reset(seed=0)
    env.step(5)
    eos = env.unwrapped.setup.eos_token_id
    with pytest.raises(RewardError, match="my_reward.*non-finite"):
        env.step(eos)
    state["value"] = 0.25  # the failed step was not applied: the same step now succeeds
    _, reward, terminated, _, info = env.step(eos)
    assert terminated and reward == 0.25 and info["num_tokens"] == 1


def test_raising_reward_is_named(count_env):
    def broken(completions):
        raise ZeroDivisionError("oops")

    env = gym.make("TextCount-v0", model="tiny", reward=broken, max_new_tokens=1)
    env.reset(seed=0)
    with pytest.raises(RewardError, match="broken.*ZeroDivisionError: oops"):
        env.step(5)
    env.reset(seed=1)


def test_bad_constructor_arguments():
    with pytest.warns(UserWarning, match="render_mode='sound'"):
        env = gym.make("TextCount-v0", model="tiny", render_mode="sound")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="render_mode 'sound' is not supported"):
        env.unwrapped.render()
    with pytest.raises(ValueError, match="prompt_template"):
        gym.make("TextCount-v0", model="tiny", prompt_template="no placeholder")
    with pytest.raises(ValueError, match="max_new_tokens"):
        gym.make("TextCount-v0", model="tiny", max_new_tokens=-3)


@pytest.mark.parametrize("template,match", [
    ("{{text}}", "escaped braces"),
    ("{text} {other}", "KeyError"),
    ("{0} {text}", "IndexError"),
    ("{text", "ValueError"),
    (None, None),  # None is the task's own template
])
def test_prompt_templates_are_checked_by_formatting_a_sample(template, match):
    if match is None:
        gym.make("TextCount-v0", model="tiny", prompt_template=template)
        return
    with pytest.raises(ValueError, match=match):
        gym.make("TextCount-v0", model="tiny", prompt_template=template)


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 0}, {"max_prompt_tokens": 0}, {"max_new_tokens": 2.5},
                                    {"max_new_tokens": True}, {"max_prompt_tokens": "8"}])
def test_token_budgets_must_be_integers_of_at_least_one(kwargs):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        gym.make("TextCount-v0", model="tiny", **kwargs)
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        gym.make_vec("TextCount-v0", num_envs=2, model="tiny", **kwargs)


@pytest.mark.parametrize("kwargs", [{"target_pairs": 0}, {"shown": -1}, {"start_max": 1.5},
                                    {"sizes": {"test": -1}}, {"sizes": {"tset": 5}}])
def test_task_keywords_are_checked_at_construction(kwargs):
    with pytest.raises(ValueError, match="must be an integer >= [01]|unknown splits"):
        gym.make("TextCount-v0", model="tiny", **kwargs)


@pytest.mark.parametrize("returned", ["7", ["0.5"], {0: 0.9}, [True], [None], [[0.5]], "0.5"])
def test_a_reward_must_return_real_numbers_not_coercible_things(returned):
    def sloppy(completions):
        return returned if not isinstance(returned, list) else returned * len(completions)

    env = gym.make("TextCount-v0", model="tiny", reward=sloppy, max_new_tokens=1)
    env.reset(seed=0)
    with pytest.raises(RewardError, match="sloppy"):
        env.step(5)


def test_numpy_and_torch_scores_are_real_numbers():
    import torch

    for returned in (np.array([0.5]), torch.tensor([0.5]), [np.float32(0.5)], (1,)):
        env = gym.make("TextCount-v0", model="tiny", reward=lambda c, r=returned: r, max_new_tokens=1)
        env.reset(seed=0)
        _, reward, *_ = env.step(5)
        assert reward == float(returned[0])


def test_a_dense_reward_difference_that_overflows_is_refused_and_changes_nothing():
    scores = iter([1e308, -1e308, 0.5])

    def huge(completions):
        return [next(scores) for _ in completions]

    for vector in (False, True):
        scores = iter([1e308, -1e308, 0.5])
        if vector:
            env = gym.make_vec("TextCount-v0", num_envs=1, model="tiny", reward=huge, dense_reward=True)
            env.reset(seed=0)
            env.step(np.array([5]))
            with pytest.raises(RewardError, match="not finite"):
                env.step(np.array([6]))
            _, reward, *_ = env.step(np.array([6]))  # the failed step was not applied
            assert reward[0] == 0.5 - 1e308
        else:
            env = gym.make("TextCount-v0", model="tiny", reward=huge, dense_reward=True)
            env.reset(seed=0)
            env.step(5)
            with pytest.raises(RewardError, match="not finite"):
                env.step(6)
            _, reward, *_ = env.step(6)
            assert reward == 0.5 - 1e308


def _draws(env, n=4):
    """What an env draws next: the prompts of ``n`` unseeded resets, then one number from its RNG."""
    indices = [env.reset()[1]["index"] for _ in range(n)]
    return indices, env.unwrapped.np_random.random()


@pytest.mark.parametrize("seed,options", [
    (123, {"bogus": 1}),
    (123, {"index": 10**9}),
    (123, {"index": "3"}),
    (-5, None),
    ("x", None),
    (True, None),
])
def test_a_refused_reset_leaves_the_rng_as_it_was(seed, options):
    """Seed and options are checked before the env reseeds: after a refused reset the env draws what
    an identical env that never saw the call draws."""
    env, twin = gym.make("TextCount-v0", model="tiny"), gym.make("TextCount-v0", model="tiny")
    env.reset(seed=0)
    twin.reset(seed=0)
    with pytest.raises((ValueError, TypeError, IndexError)):
        env.reset(seed=seed, options=options)
    assert _draws(env) == _draws(twin)


def test_prompt_template_size_is_limited_up_front():
    from textenv.core import MAX_TEMPLATE_CHARS

    ok = "x" * (MAX_TEMPLATE_CHARS - len("{text}")) + "{text}"
    gym.make("TextCount-v0", model="tiny", prompt_template=ok)
    with pytest.raises(ValueError, match=f"prompt_template has {MAX_TEMPLATE_CHARS + 1:,} characters.*"
                                         f"at most {MAX_TEMPLATE_CHARS:,}"):
        gym.make("TextCount-v0", model="tiny", prompt_template="x" + ok)


@pytest.mark.parametrize("value", ["{{ messages }}", 1, "yes"])
def test_chat_template_is_a_switch_not_a_template(value):
    with pytest.raises(ValueError, match=r"chat_template must be True, False or None"):
        gym.make("TextCount-v0", model="tiny", chat_template=value)
    gym.make("TextCount-v0", model="tiny", chat_template=False)
