"""The env contract on every registered id: check_env, determinism, EOS, budget, info, render."""

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import run_episode
from gymnasium.utils.env_checker import check_env

import textenv
from textenv.core import PromptTruncationWarning

MODELS = ["tiny", pytest.param("smollm2-135m", marks=pytest.mark.slow)]
# the single-turn contract (an episode ends at EOS); TextDialogue-v0's turns are tested in test_dialogue.py
SINGLE_TURN = [i for i in textenv.ENV_IDS if i not in ("TextDialogue-v0", "TextReasoningTools-v0")]


@pytest.fixture(scope="module", params=[(i, m) for i in SINGLE_TURN for m in MODELS],
                ids=lambda p: f"{p[0]}-{p[1] if isinstance(p[1], str) else p[1].values[0]}")
def env(request):
    env_id, model = request.param
    model = model if isinstance(model, str) else model.values[0]
    e = gym.make(env_id, model=model, max_new_tokens=8)
    yield e
    e.close()


def test_check_env_passes_without_warnings(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    # check_env also resets without a seed, so which prompts it draws differs run to run; one aclsum
    # train paper is longer than the default 512-token budget with the default tokenizer, and the
    # env warns about it by design (tested in test_bad_input.py). Every other warning is a failure.
    caught = [w for w in caught if not issubclass(w.category, PromptTruncationWarning)]
    assert [str(w.message) for w in caught] == []


def test_two_seeded_rollouts_match(env):
    def rollout(seed):
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)  # a seeded "agent" that never picks EOS
        eos = env.unwrapped.setup.eos_token_id
        actions = [int(a) if a != eos else 0 for a in rng.integers(env.action_space.n, size=8)]
        return run_episode(env, actions, seed=seed)

    obs_a, rew_a, end_a = rollout(7)
    obs_b, rew_b, end_b = rollout(7)
    for a, b in zip(obs_a, obs_b, strict=True):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
        np.testing.assert_array_equal(a["attention_mask"], b["attention_mask"])
    assert rew_a == rew_b
    assert end_a[2]["text"] == end_b[2]["text"] and end_a[2]["index"] == end_b[2]["index"]
    _, _, end_c = rollout(8)
    assert (end_a[2]["index"], end_a[2]["text"]) != (end_c[2]["index"], end_c[2]["text"])


def test_eos_terminates(env):
    eos = env.unwrapped.setup.eos_token_id
    other = 0 if eos != 0 else 1
    _, rewards, (terminated, truncated, info) = run_episode(env, [other, other, eos], seed=1)
    assert terminated and not truncated
    assert len(rewards) == 3 and info["num_tokens"] == 2 and info["ended_with_eos"]
    assert info["text"] == env.unwrapped.tokenizer.decode([other, other], skip_special_tokens=True)
    assert all(r == 0.0 for r in rewards[:-1]) and rewards[-1] == info["reward"]


def test_budget_truncates(env):
    eos = env.unwrapped.setup.eos_token_id
    token = 0 if eos != 0 else 1
    observations, rewards, (terminated, truncated, info) = run_episode(env, [token], seed=2)
    assert truncated and not terminated
    assert len(rewards) == 8 and info["num_tokens"] == 8 and not info["ended_with_eos"]
    p = env.unwrapped.setup.max_prompt_tokens
    last = observations[-1]
    assert (last["input_ids"][p:p + 8] == token).all() and (last["attention_mask"][p:p + 8] == 1).all()
    assert set(info) >= {"text", "prompt", "reference", "reward_parts"}


def test_observation_layout_and_reset_index(count_env):
    setup = count_env.unwrapped.setup
    obs, info = count_env.reset(options={"index": 5})
    enc = setup.encode(5)
    n, p = len(enc.ids), setup.max_prompt_tokens
    assert info["index"] == 5 and obs["input_ids"].shape == (setup.length,)
    np.testing.assert_array_equal(obs["input_ids"][p - n:p], enc.ids)
    assert obs["attention_mask"][:p - n].sum() == 0 and obs["attention_mask"][p - n:p].all()
    assert not obs["attention_mask"][p:].any()
    assert count_env.unwrapped.tokenizer.decode(enc.ids) == setup.examples[5].text


def test_final_info_reports_reward_parts_of_a_combined_reward():
    env = gym.make("TextCount-v0", model="tiny", reward={"increasing": 2.0, "length": 0.5})
    tok = env.unwrapped.tokenizer
    env.reset(seed=0)
    ids = tok(" 10 11 12 13", add_special_tokens=False)["input_ids"]
    for t in ids:
        env.step(t)
    _, reward, terminated, _, info = env.step(tok.eos_token_id)
    parts = info["reward_parts"]
    assert terminated and set(parts) == {"increasing", "length"}
    assert parts["increasing"] == pytest.approx(3 / 6)
    assert reward == pytest.approx(2.0 * parts["increasing"] + 0.5 * parts["length"])


def test_dense_reward_sums_to_the_sparse_reward():
    tok = gym.make("TextCount-v0", model="tiny").unwrapped.tokenizer
    actions = tok(" 4 5 6 7 8", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    sparse = gym.make("TextCount-v0", model="tiny")
    dense = gym.make("TextCount-v0", model="tiny", dense_reward=True)
    _, r_sparse, end_s = run_episode(sparse, actions, seed=3)
    _, r_dense, end_d = run_episode(dense, actions, seed=3)
    assert sum(r_dense) == pytest.approx(sum(r_sparse)) == pytest.approx(end_s[2]["reward"])
    assert sum(r != 0 for r in r_dense) > 1  # the signal really is spread over the steps


def test_render_ansi_shows_prompt_and_text():
    env = gym.make("TextCount-v0", model="tiny", render_mode="ansi")
    _, info = env.reset(seed=0)
    tok = env.unwrapped.tokenizer
    env.step(tok(" 99", add_special_tokens=False)["input_ids"][0])
    assert env.render().startswith(info["prompt"]) and "9" in env.render()[len(info["prompt"]):]


def test_render_rgb_array_draws_the_text_and_sb3_make_vec_env_does_not_warn():
    """SB3's ``make_vec_env`` asks every env for ``render_mode="rgb_array"``: it gets a fixed-size
    frame of the text (one per sub-env from the vector env), and no Gymnasium warning."""
    import warnings

    from stable_baselines3.common.env_util import make_vec_env

    env = gym.make("TextCount-v0", model="tiny", render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert (first < 128).any() and (first > 128).any()  # text on a background, not a blank frame
    env.step(env.unwrapped.tokenizer(" 99", add_special_tokens=False)["input_ids"][0])
    after = env.render()
    assert after.shape == first.shape and not np.array_equal(after, first)  # the new token is drawn
    envs = gym.make_vec("TextCount-v0", num_envs=2, model="tiny", render_mode="rgb_array")
    envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 2 and frames[0].shape == first.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium's "render_mode ... not in metadata" would raise here
        venv = make_vec_env("TextCount-v0", n_envs=2, env_kwargs={"model": "tiny"})
    venv.reset()
    assert venv.get_images()[0].shape == first.shape


def test_make_with_module_prefix_without_importing_textenv():
    code = ("import gymnasium as gym; e = gym.make('textenv:TextCount-v0', model='tiny'); "
            "o, _ = e.reset(seed=0); print(o['input_ids'].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(32,)"


def test_task_keywords_reach_the_task():
    env = gym.make("TextSummarize-v0", model="tiny", aspects=["outcome"], split="validation")
    examples = env.unwrapped.examples
    assert len(examples) == 50 and {e.metadata["aspect"] for e in examples} == {"outcome"}
    env = gym.make("TextReasoning-v0", model="tiny", dataset="chain_sum", sizes={"train": 5})
    assert len(env.unwrapped.examples) == 5
    assert env.unwrapped.examples[0].metadata["dataset"] == "chain_sum"


def _play(env, actions):
    """Step ``actions`` until the episode ends: each step's observation arrays, reward, flags and info."""
    steps = []
    for token in actions:
        obs, reward, terminated, truncated, info = env.step(token)
        steps.append((obs["input_ids"].tolist(), obs["attention_mask"].tolist(), reward, terminated, truncated,
                      repr(info)))
        if terminated or truncated:
            break
    return steps


@pytest.mark.parametrize(("env_id", "kwargs", "before", "after"), [
    # the dense reward so far is part of the state: the numbers make each step's reward differ
    ("TextCount-v0", {"dense_reward": True}, " 4 5 6", " 7 8 9 10 11 12"),
    # and a multi-turn episode's turns: the snapshot is taken in its second agent turn
    ("TextDialogue-v0", {"max_turn_tokens": 3}, " hi there how are you", " fine thanks"),
])
def test_restore_puts_the_episode_back_as_it_was_at_the_snapshot(env_id, kwargs, before, after):
    """TextEnv.snapshot / restore, the public undo that TextActions plays a reply with: after restore the
    env is where it was (the snapshot holds the observation of that moment), and the same steps give the
    same observations, rewards and infos as from the snapshot the first time, even after a reset to
    another prompt in between, and again from the same snapshot."""
    env = gym.make(env_id, model="tiny", **kwargs)
    base = env.unwrapped
    assert not base.running
    env.reset(seed=0, options={"index": 1})
    for token in base.tokenizer(before, add_special_tokens=False)["input_ids"]:
        obs, *_ = env.step(token)
    snap = base.snapshot()
    np.testing.assert_array_equal(snap.input_ids, obs["input_ids"])
    np.testing.assert_array_equal(snap.attention_mask, obs["attention_mask"])
    assert base.running and snap.index == 1 and not snap.input_ids.flags.writeable
    left = base.tokens_left()
    actions = [*base.tokenizer(after, add_special_tokens=False)["input_ids"] * 20, base.setup.eos_token_id]
    first = _play(env, actions)
    assert not base.running and len(first) > 1 and len({step[2] for step in first}) > 1
    base.restore(snap)
    assert base.running and base.tokens_left() == left
    assert _play(env, actions) == first
    env.reset(seed=5, options={"index": 2})
    base.restore(snap)
    assert _play(env, actions) == first
