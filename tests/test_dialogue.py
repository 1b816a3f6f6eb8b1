"""TextDialogue-v0: real conversations replayed turn by turn, per-turn rewards, both env classes alike."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from textenv.data.chitchat import load_conversations, split_conversations
from textenv.env import TextEnv
from textenv.rewards import Completion, RewardError, resolve
from textenv.task_factories import dialogue
from textenv.turns import user_turn_ids
from textenv.vector import TextVectorEnv


def _make(**kw):
    return gym.make("TextDialogue-v0", model="tiny", **kw).unwrapped


def _say(env, text):
    """Step ``text``'s tokens, then EOS; return the last step."""
    for t in env.tokenizer(text, add_special_tokens=False)["input_ids"]:
        out = env.step(t)
        assert not (out[2] or out[3]) and out[1] == 0.0  # nothing is scored inside a turn
    return env.step(env.setup.eos_token_id)


def test_conversations_split_by_conversation_and_filtered_to_whole_turns():
    convs = load_conversations()
    ids = {s: {c.id for c in split_conversations(convs, s)} for s in ("train", "validation", "test")}
    assert not ids["train"] & ids["test"] and sum(map(len, ids.values())) == len(convs) == 7168
    task = dialogue(turns=2, max_turn_words=20)
    for ex in task.load("validation"):
        turns = (ex.text, *ex.metadata["user_turns"])
        assert len(turns) == 2 and len(ex.metadata["replies"]) == 2 and ex.references[0] == ex.metadata["replies"][0]
        assert all(0 < len(t.split()) <= 20 for t in (*turns, *ex.metadata["replies"]))
    assert len(dialogue(turns=4).load("test")) < len(dialogue(turns=2).load("test"))
    with pytest.raises(ValueError, match="turns must be an integer >= 1"):
        dialogue(turns=0)


def test_an_episode_inserts_the_other_sides_turns_and_scores_each_agent_turn():
    env = _make()
    check_env(env)
    _, info = env.reset(seed=0, options={"index": 2})
    ex = env.examples[2]
    assert info["prompt"] == f"User: {ex.text}\nAssistant:"  # no chat template on the tiny tokenizer
    rewards = []
    for k in range(3):
        obs, reward, terminated, truncated, info = _say(env, " " + ex.metadata["replies"][k])
        rewards.append(reward)
        assert info["turn"] == k and info["turn_reward"] == reward
        assert info["turn_text"] == " " + ex.metadata["replies"][k]
        assert set(info["turn_parts"]) == {"relevance", "repetition", "length"}
        assert (terminated, truncated) == ((k == 2), False)
        if k < 2:  # the next real turn is in the observation, after the agent's EOS
            seen = env.tokenizer.decode(obs["input_ids"][obs["attention_mask"] == 1])
            assert seen.endswith(f"User: {ex.metadata['user_turns'][k]}\nAssistant:")
            assert info["inserted_tokens"] == len(user_turn_ids(env.setup, 2, k))
    assert info["turn_rewards"] == rewards and info["return"] == pytest.approx(sum(rewards))
    assert [m["role"] for m in info["conversation"]] == ["user", "assistant"] * 3
    assert info["conversation"][2]["content"] == ex.metadata["user_turns"][0]
    gen = obs["input_ids"][env.setup.max_prompt_tokens:]
    for (start, end), text in zip(info["turn_bounds"], info["turns"], strict=True):  # the agent's own tokens
        assert env.tokenizer.decode(gen[start:end]) == text
    # the last turn was scored against the turn it answers (relevance reads metadata["user"])
    c = Completion("", " " + ex.metadata["replies"][2], metadata={"user": ex.metadata["user_turns"][1]})
    assert resolve("relevance")([c])[0] == pytest.approx(info["turn_parts"]["relevance"])


def test_a_turn_at_max_turn_tokens_is_closed_by_the_env_and_a_full_layout_truncates():
    env = _make(max_turn_tokens=3)
    env.reset(seed=0, options={"index": 0})
    for _ in range(2):
        assert env.step(7)[4] == {}
    _, reward, terminated, truncated, info = env.step(7)
    assert not (terminated or truncated) and info["turn_ended_with_eos"] is False
    assert info["inserted_tokens"] == 1 + len(user_turn_ids(env.setup, 0, 0))  # its own EOS, then the turn
    assert info["turn_parts"]["length"] < 0  # the length part charges a turn that did not end itself
    small = _make(max_new_tokens=12)
    small.reset(seed=0, options={"index": 0})
    _, _, terminated, truncated, info = small.step(small.setup.eos_token_id)  # the next turn would not fit
    assert truncated and not terminated and info["truncated_by"] == "room" and len(info["turns"]) == 1


def test_the_last_turn_says_why_it_was_cut():
    """max_turn_tokens cuts the last turn ("turn_limit"); the end of the layout cuts it ("room")."""
    def last_turn(env, steps):
        env.reset(seed=0, options={"index": 0})
        out = env.step(env.setup.eos_token_id)  # the first turn ends at once; the user's turn follows
        assert not (out[2] or out[3])
        for _ in range(steps):
            out = env.step(7)
        return out

    _, _, terminated, truncated, info = last_turn(_make(turns=2, max_turn_tokens=3), 3)
    assert truncated and not terminated and info["truncated_by"] == "turn_limit"
    inserted = 1 + len(user_turn_ids(_make(turns=2).setup, 0, 0))  # EOS + the user's turn
    _, _, terminated, truncated, info = last_turn(_make(turns=2, max_new_tokens=inserted + 3), 3)
    assert truncated and not terminated and info["truncated_by"] == "room"


def test_vector_env_steps_conversations_like_single_envs():
    rng = np.random.default_rng(0)
    kw = dict(task="textenv.task_factories:dialogue", model="tiny", max_turn_tokens=6, max_new_tokens=60)
    venv = TextVectorEnv(3, **kw)
    singles = [TextEnv(**kw) for _ in range(3)]
    obs, _ = venv.reset(seed=5)
    for i, e in enumerate(singles):
        o, _ = e.reset(seed=5 + i)
        np.testing.assert_array_equal(obs["input_ids"][i], o["input_ids"])
    eos = venv.setup.eos_token_id
    ended = 0
    for _ in range(80):
        actions = np.where(rng.random(3) < 0.25, eos, rng.integers(5, 200, 3))
        obs, rewards, term, trunc, infos = venv.step(actions)
        for i, e in enumerate(singles):
            if e._done:  # next-step autoreset: the vector env resets this row now, with its own seed stream
                continue
            o, r, t, tr, info = e.step(int(actions[i]))
            np.testing.assert_array_equal(obs["input_ids"][i], o["input_ids"])
            assert (r, t, tr) == (rewards[i], term[i], trunc[i])
            if "turn" in info:
                assert infos["turn"][i] == info["turn"] and infos["_turn"][i]
            ended += t or tr
        if any(e._done for e in singles):
            break
    assert ended >= 1


def test_a_reward_that_raises_at_a_turn_end_leaves_the_vector_env_as_it_was():
    def bad(completions):
        raise ValueError("boom")

    venv = TextVectorEnv(2, task="textenv.task_factories:dialogue", model="tiny", reward=bad)
    venv.reset(seed=0)
    venv.step(np.array([7, 8]))
    before = venv._obs()
    with pytest.raises(RewardError, match="boom"):
        venv.step(np.array([venv.setup.eos_token_id, 9]))
    after = venv._obs()
    np.testing.assert_array_equal(before["input_ids"], after["input_ids"])
    assert venv._n_gen.tolist() == [1, 1]


def test_bad_input_is_refused_when_made():
    with pytest.raises(ValueError, match="dense_reward=True is not supported"):
        _make(dense_reward=True)
    env = _make()
    env.reset(seed=0, options={"index": 0})
    short = type(env.setup.examples[0])(text="hi", references=("yo",), metadata={"user_turns": (), "replies": ("yo",)})
    env.setup.examples.append(short)
    with pytest.raises(ValueError, match="the conversation ended before the agent's turn"):
        user_turn_ids(env.setup, len(env.setup.examples) - 1, 0)


@pytest.mark.slow
def test_chat_template_turns_are_the_templates_own_tokens():
    """With the default model's chat template, an inserted turn is exactly what the template puts
    between an assistant message's EOS and the next generation prompt."""
    env = gym.make("TextDialogue-v0").unwrapped
    ex = env.examples[0]
    text = env.tokenizer.decode(user_turn_ids(env.setup, 0, 0))
    assert text == f"\n<|im_start|>user\n{ex.metadata['user_turns'][0]}<|im_end|>\n<|im_start|>assistant\n"
    assert env.setup.encode(0).text.endswith(f"<|im_start|>user\n{ex.text}<|im_end|>\n<|im_start|>assistant\n")


def test_text_actions_play_one_agent_turn_per_reply():
    from textenv.wrappers import TextActions

    env = TextActions(gym.make("TextDialogue-v0", model="tiny", max_turn_tokens=8))
    check_env(env.unwrapped)
    env.reset(seed=0, options={"index": 1})
    ex = env.unwrapped.examples[1]
    obs, reward, terminated, truncated, info = env.step("hi there, how are you?")
    assert info["turn"] == 0 and not (terminated or truncated) and reward == info["turn_reward"]
    seen = env.unwrapped.tokenizer.decode(obs["input_ids"][obs["attention_mask"] == 1])
    assert seen.endswith(f"User: {ex.metadata['user_turns'][0]}\nAssistant:")
    long = "word " * 40  # cut at max_turn_tokens: the rest is dropped, not carried into the next turn
    _, _, terminated, truncated, info = env.step(long)
    assert info["turn"] == 1 and info["reply_tokens"] == 8 and info["dropped_tokens"] > 0
    _, _, terminated, truncated, info = env.step("bye")
    assert terminated and info["turns"][2] == "bye" and len(info["conversation"]) == 6


def test_more_turns_than_the_data_has_names_turns_and_the_most_it_has():
    import re

    with pytest.raises(ValueError, match=r"turns=1000000.*split 'validation'.*at most turns=\d+") as exc:
        _make(turns=10**6, split="validation")
    most = int(re.search(r"at most turns=(\d+)", str(exc.value)).group(1))
    assert _make(turns=most, split="validation", max_new_tokens=4096).setup.turns == most
    with pytest.raises(ValueError, match=f"at most turns={most}"):
        _make(turns=most + 1, split="validation")


@pytest.mark.parametrize("max_turn_tokens", [3, 8])
def test_the_context_a_turn_is_scored_in_is_the_conversation_so_far_decoded_whole(max_turn_tokens):
    """The reward reads each turn after the prompt and the conversation before it, kept turn by turn
    (no re-decoding of the prefix at every turn end): the same text as decoding that prefix whole,
    with random tokens (byte pieces of split characters among them) and turns cut at the limit."""
    env = _make(max_turn_tokens=max_turn_tokens)
    setup, score = env.setup, env.setup.score
    prompts = []

    def recording(completions):
        prompts.extend(c.prompt for c in completions)
        return score(completions)

    env.setup.score = recording
    rng = np.random.default_rng(0)
    for index in range(6):
        prompts.clear()
        env.reset(seed=index, options={"index": index})
        done, info = False, {}
        while not done:
            token = setup.eos_token_id if rng.random() < 0.15 else int(rng.integers(setup.vocab_size))
            obs, _, terminated, truncated, info = env.step(token)
            done = terminated or truncated
        gen = obs["input_ids"][setup.max_prompt_tokens:][obs["attention_mask"][setup.max_prompt_tokens:] == 1]
        starts = [start for start, _ in info["turn_bounds"]]
        assert len(prompts) == len(starts) >= 1
        for prompt, start in zip(prompts, starts, strict=True):
            assert prompt == setup.encode(index).text + setup.tokenizer.decode(gen[:start].tolist())
