"""The native vector env against Gymnasium's SyncVectorEnv over the single env."""

import gymnasium as gym
import numpy as np
import pytest

from textenv.rewards import Completion

B = 4


def _actions(rng, n, eos, steps):
    acts = rng.integers(0, n, size=(steps, B))
    acts[rng.random((steps, B)) < 0.15] = eos  # some episodes end early, at different steps
    return acts


def _assert_infos_equal(a, b):
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], dict):
            _assert_infos_equal(a[key], b[key])
        else:
            assert list(a[key]) == list(b[key]), key


@pytest.mark.parametrize("env_id,kwargs", [
    ("TextCount-v0", {}),
    ("TextSentiment-v0", {"max_new_tokens": 6}),
    ("TextSummarize-v0", {"max_new_tokens": 6}),
])
def test_same_seeds_give_the_same_episodes_as_sync(env_id, kwargs):
    native = gym.make_vec(env_id, num_envs=B, model="tiny", **kwargs)
    sync = gym.make_vec(env_id, num_envs=B, model="tiny", vectorization_mode="sync", **kwargs)
    assert type(native).__name__ == "TextVectorEnv"
    o1, i1 = native.reset(seed=11)
    o2, i2 = sync.reset(seed=11)
    for k in o1:
        np.testing.assert_array_equal(o1[k], o2[k])
    assert list(i1["index"]) == list(i2["index"])
    eos = native.unwrapped.setup.eos_token_id
    finished = 0
    for acts in _actions(np.random.default_rng(0), native.single_action_space.n, eos, 40):
        r1, r2 = native.step(acts), sync.step(acts)
        for k in r1[0]:
            np.testing.assert_array_equal(r1[0][k], r2[0][k])
        np.testing.assert_allclose(r1[1], r2[1])
        np.testing.assert_array_equal(r1[2], r2[2])
        np.testing.assert_array_equal(r1[3], r2[3])
        _assert_infos_equal(r1[4], r2[4])
        finished += int(np.sum(r1[2] | r1[3]))
    assert finished >= B  # the comparison covered episode ends and autoresets


def test_finished_episodes_are_scored_in_one_batched_call():
    calls = []

    def reward(completions):
        calls.append(len(completions))
        return [float(len(c.text)) for c in completions]

    env = gym.make_vec("TextCount-v0", num_envs=B, model="tiny", reward=reward)
    env.reset(seed=0)
    eos = env.unwrapped.setup.eos_token_id
    _, rewards, terminated, _, info = env.step(np.array([5, eos, eos, 7]))
    assert calls == [2] and list(terminated) == [False, True, True, False]
    assert rewards[1] == 0.0 and list(info["_text"]) == [False, True, True, False]


def test_same_step_autoreset_returns_final_obs_and_new_prompt():
    env = gym.make_vec("TextCount-v0", num_envs=2, model="tiny", autoreset_mode="same_step")
    obs, _ = env.reset(seed=0)
    eos = env.unwrapped.setup.eos_token_id
    obs, _, _, _, _ = env.step(np.array([9, 9]))
    obs2, _, term, _, info = env.step(np.array([eos, 9]))
    assert list(term) == [True, False] and list(info["_final_info"]) == [True, False]
    p = env.unwrapped.setup.max_prompt_tokens
    final = info["final_obs"][0]
    assert final["input_ids"][p] == 9 and final["attention_mask"][p] == 1
    assert obs2["attention_mask"][0, p:].sum() == 0  # sub-env 0 already holds a fresh prompt
    assert obs2["attention_mask"][1, p:].sum() == 2
    assert info["final_info"]["text"][0] == env.unwrapped.tokenizer.decode([9])


def test_reset_index_option_and_bad_options():
    env = gym.make_vec("TextCount-v0", num_envs=2, model="tiny")
    _, info = env.reset(options={"index": [3, 4]})
    assert list(info["index"]) == [3, 4]
    with pytest.raises(ValueError, match="needs 2 indices"):
        env.reset(options={"index": [1]})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"idx": [1, 2]})


@pytest.mark.parametrize("actions,error,match", [
    (np.array([1, 2, 3]), ValueError, "shape"),
    (np.array([1.0, 2.0]), TypeError, "integer"),
    (np.array([1, -1]), ValueError, "out of range"),
    (np.array([1, 10**9]), ValueError, "sub-env 1"),
])
def test_bad_vector_actions_leave_the_env_usable(actions, error, match):
    env = gym.make_vec("TextCount-v0", num_envs=2, model="tiny")
    obs, _ = env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(actions)
    obs2, *_ = env.step(np.array([5, 5]))
    p = env.unwrapped.setup.max_prompt_tokens
    np.testing.assert_array_equal(obs2["input_ids"][:, :p], obs["input_ids"][:, :p])
    assert (obs2["input_ids"][:, p] == 5).all()


def test_vector_reward_error_leaves_every_sub_env_unchanged():
    state = {"fail": True}

    def flaky(completions):
        if state["fail"]:
            raise ValueError("boom")
        return [1.0] * len(completions)

    env = gym.make_vec("TextCount-v0", num_envs=2, model="tiny", reward=flaky)
    obs, _ = env.reset(seed=0)
    eos = env.unwrapped.setup.eos_token_id
    with pytest.raises(Exception, match="flaky.*boom"):
        env.step(np.array([eos, 5]))
    state["fail"] = False
    _, rewards, term, _, _ = env.step(np.array([eos, 5]))
    assert list(term) == [True, False] and list(rewards) == [1.0, 0.0]
    assert isinstance(Completion(prompt="", text=""), Completion)


@pytest.mark.parametrize("seed,options", [
    ([5, "x"], None),
    ([5, -1], None),
    (-3, None),
    (2.5, None),
    (7, {"index": [1, 10**9]}),
    (7, {"bogus": 1}),
])
def test_a_refused_vector_reset_reseeds_no_sub_env(seed, options):
    """Every seed and option is checked before any sub-env is reseeded: after a refused reset the env
    draws what an identical env that never saw the call draws."""
    env = gym.make_vec("TextCount-v0", num_envs=2, model="tiny")
    twin = gym.make_vec("TextCount-v0", num_envs=2, model="tiny")
    env.reset(seed=0)
    twin.reset(seed=0)
    with pytest.raises((ValueError, TypeError, IndexError)):
        env.reset(seed=seed, options=options)
    for _ in range(4):
        (obs_a, info_a), (obs_b, info_b) = env.reset(), twin.reset()
        assert list(info_a["index"]) == list(info_b["index"])
        np.testing.assert_array_equal(obs_a["input_ids"], obs_b["input_ids"])


def test_numpy_integer_seeds_are_seeds():
    env = gym.make_vec("TextCount-v0", num_envs=2, model="tiny")
    _, a = env.reset(seed=[np.int64(3), np.int32(4)])
    _, b = env.reset(seed=3)
    assert list(a["index"]) == list(b["index"])
