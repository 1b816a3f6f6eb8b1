"""Tool use: the call format, the built-in tools, every bad input, user tools, tool episodes in both envs."""

import json
import re
import time

import gymnasium as gym
import numpy as np
import pytest

from textenv.tasks import Example
from textenv.tools import ToolLimits, as_tool, call_tool, describe, find_call, resolve_tools
from textenv.tools.calculator import calculator
from textenv.tools.search import search, sentences
from textenv.vector import TextVectorEnv
from textenv.wrappers import TextActions

CALC = {t.name: t for t in resolve_tools(["calculator"])}
ROOM = 600  # max_new_tokens for tiny-model tool episodes: the tiny tokenizer spells JSON nearly byte by byte


def _call(body, tools=CALC, example=None, limits=None):
    return call_tool(body, tools, example, limits or ToolLimits())


def call(name, **arguments):
    return json.dumps({"name": name, "arguments": arguments})


def tagged(name, **arguments):
    return f"<tool_call>{call(name, **arguments)}</tool_call>"


# -- the call format --------------------------------------------------------------------------

def test_find_call_takes_the_last_complete_call():
    assert find_call('x <tool_call>{"a": 1}</tool_call>') == '{"a": 1}'
    assert find_call('<tool_call>{"a": 1}') is None
    assert find_call("no call here") is None
    assert find_call("<tool_call>1</tool_call> then <tool_call>2</tool_call>") == "2"


def test_a_call_runs_the_tool_with_its_checked_arguments():
    r = _call(call("calculator", expression="12*7"))
    assert (r.text, r.error, r.name, dict(r.arguments)) == ("84", False, "calculator", {"expression": "12*7"})
    assert _call(f"[{call('calculator', expression='2+3')}]").text == "5"  # SmolLM2's list form
    assert r.record() == {"name": "calculator", "arguments": {"expression": "12*7"}, "result": "84", "error": False}


@pytest.mark.parametrize("body,match", [
    ('{"name": "calculator", "arguments": {"expression": "1+1"}', "not valid JSON"),
    ("[" * 1999 + "]" * 1999, "not valid JSON"),  # deeper than the JSON decoder recurses
    ('{"name": "fetch", "arguments": {}}', r"unknown tool 'fetch'; the tools are \['calculator'\]"),
    ('{"name": "calculator", "arguments": {"expression": 12}}', "must be a str, got int"),
    ('{"name": "calculator", "arguments": {}}', "needs the argument 'expression'"),
    ('{"name": "calculator", "arguments": {"expression": "1", "x": 1}}', "has no argument 'x'"),
    ('{"name": "calculator", "arguments": "1+1"}', "must be a JSON object"),
    ('{"name": "calculator", "arguments": {"expression": "1"}, "id": 3}', "unexpected keys"),
    ('"calculator"', "one JSON object"),
    (call("calculator", expression="9**9**9"), "too large"),
    (call("calculator", expression="1/0"), "division by zero"),
    (call("calculator", expression="(" * 10_000 + "1" + ")" * 10_000), "characters long"),
    (call("calculator", expression="1" * 1_000_000), "characters long"),  # a 1 MB argument
    (call("calculator", expression="__import__('os').system('touch /tmp/textenv-pwned')"), "Call is not allowed"),
])
def test_bad_calls_are_error_results_the_agent_reads(body, match):
    r = _call(body)
    assert r.error and r.text.startswith("error: ") and re.search(match, r.text), r.text


# -- the calculator ---------------------------------------------------------------------------

def test_the_calculator_computes_arithmetic():
    assert calculator("(12 + 3) * 4") == "60"
    assert calculator("84 / 7") == "12" and calculator("7 / 2") == "3.5" and calculator("1/3") == "0.3333333333"
    assert calculator("2 ** 10") == "1024" and calculator("2 ** -1") == "0.5"
    assert calculator("-3 - -4") == "1" and calculator("17 // 5") == "3" and calculator("17 % 5") == "2"
    assert calculator("12 \u00d7 3 =") == "36"  # a times sign and a trailing "=" as people write them
    assert calculator("(" * 90 + "2" + ")" * 90) == "2"


@pytest.mark.parametrize("expression,match", [
    ("9**9**9", "too large"), ("10**19", "too large"), ("(10**18)*(10**18)", "too large"),
    ("1e308*10", "too large"), ("0.5**-100", "too large"), ("0**-1", "division by zero"),
    ("1/0", "division by zero"), ("5 % 0", "division by zero"), ("5 // 0", "division by zero"),
    ("(-8) ** 0.5", "not a real number"), ("2 ^ 3", r"write \*\* for a power"),
    ("abs(-1)", "Call is not allowed"), ("x + 1", "Name is not allowed"), ("().__class__", "is not allowed"),
    ("'a' * 3", "'a' is not a number"), ("True + 1", "True is not a number"), ("[1, 2]", "List is not allowed"),
    ("(" * 10_000 + "1" + ")" * 10_000, "at most 200"), ("", "empty"), ("1 +", "not an arithmetic expression"),
    ("import os", "not an arithmetic expression"), ("lambda: 1", "Lambda is not allowed"),
])
def test_the_calculator_refuses_what_is_not_bounded_arithmetic(expression, match):
    with pytest.raises(ValueError, match=match):
        calculator(expression)


# -- search -----------------------------------------------------------------------------------

PASSAGE = ("The bridge opened in 1932. It spans the harbour of the city. Its arch is 134 metres high. "
           "Paul Hogan worked on it as a painter.")


def test_search_returns_the_sentences_that_match_the_query_best_first():
    ex = Example(text="q", metadata={"passage": PASSAGE})
    assert sentences(PASSAGE) == ("The bridge opened in 1932.", "It spans the harbour of the city.",
                                  "Its arch is 134 metres high.", "Paul Hogan worked on it as a painter.")
    assert search("when was the bridge opened", ex) == "The bridge opened in 1932."
    assert search("how high is the arch", ex) == "Its arch is 134 metres high."
    assert search("painter harbour", ex).split(". ")[0] in ("It spans the harbour of the city",
                                                            "Paul Hogan worked on it as a painter.")
    assert search("zebra", ex) == "no sentence of the passage matches the query"
    with pytest.raises(ValueError, match="no passage"):
        search("bridge", Example(text="q"))
    with pytest.raises(ValueError, match="query is empty"):
        search("  ", ex)


def test_qa_with_search_shows_the_question_alone():
    env = gym.make("TextQA-v0", model="tiny", tools=["search"]).unwrapped
    ex = env.examples[0]
    prompt = env.setup.encode(0).text
    assert ex.metadata["question"] in prompt and ex.metadata["passage"] not in prompt
    assert '"name": "search"' in prompt and "<tool_call>" in prompt
    assert not env.setup.encode(0).truncated  # the prompt budget grew by the tools' description
    tools = env.setup.tool_table
    found = _call(call("search", query=ex.metadata["question"]), tools=tools, example=ex)
    best = sentences(found.text.removesuffix(" ...(cut)"))[0]  # a long result is cut at max_tool_result_chars
    assert not found.error and best in ex.metadata["passage"], found.text


# -- user tools -------------------------------------------------------------------------------

def lookup(word: str, limit: int = 3) -> str:
    """The definition of an English word.

    Not shown: only the first paragraph is the description."""
    return f"{word}:{limit}"


def test_a_user_tool_is_described_from_its_signature_and_called_by_name():
    tool = as_tool(lookup)
    assert tool.parameters == {"word": str, "limit": int} and tool.required == ("word",)
    assert tool.description == "The definition of an English word."
    text = describe([tool])
    assert '"required": ["word"]' in text and '"limit": {"type": "integer"}' in text and "Not shown" not in text
    assert _call(call("lookup", word="cat"), tools={"lookup": tool}).text == "cat:3"
    assert _call(call("lookup", word="cat", limit=5), tools={"lookup": tool}).text == "cat:5"


def _no_doc(x: int) -> str:
    return ""


def _untyped(x):
    """Untyped."""


def _varargs(*xs: int) -> str:
    """Varargs."""


def _listy(xs: list) -> str:
    """A list."""


@pytest.mark.parametrize("spec,match", [
    ([_no_doc], "has no docstring"), ([_untyped], "needs a type hint"), ([_varargs], "plain named parameter"),
    ([_listy], "needs a type hint"), ([lambda x: x], "must be a Python identifier"),
    (["fetch"], "unknown tool 'fetch'"),
    (["calculator", "calculator"], r"\['calculator'\] are given twice"), ([3], "must be a callable"),
    ("calc", "unknown tool 'calc'"), ({"calculator": 1}, "must be a list"),
])
def test_tools_an_agent_could_not_call_are_refused_when_made(spec, match):
    with pytest.raises((ValueError, TypeError), match=match):
        resolve_tools(spec)
    with pytest.raises((ValueError, TypeError), match=match):
        gym.make("TextCount-v0", model="tiny", tools=spec)


@pytest.mark.parametrize("kwargs,match", [
    ({"max_tool_calls": 0}, "max_tool_calls"), ({"tool_timeout": 0}, "tool_timeout"),
    ({"max_tool_result_chars": 0}, "max_tool_result_chars"), ({"max_tool_calls": 2.5}, "max_tool_calls"),
])
def test_bad_tool_limits_are_refused_when_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("TextCount-v0", model="tiny", tools=["calculator"], **kwargs)


class _NoStr:
    def __str__(self):
        raise ValueError("no text for you")


def test_a_user_tool_that_raises_hangs_or_returns_too_much_is_an_error_or_a_cut_result():
    def boom(x: int) -> str:
        """Fails."""
        raise RuntimeError("kaput")

    def slow(x: int) -> str:
        """Sleeps past its limit."""
        time.sleep(1.5)
        return "late"

    def odd(x: int) -> str:
        """Returns something that cannot be shown."""
        return _NoStr()

    def big(x: int) -> str:
        """Returns a lot."""
        return "a" * 10_000

    tools = {t.name: t for t in resolve_tools([boom, slow, odd, big])}
    r = _call(call("boom", x=1), tools=tools)
    assert r.error and r.text == "error: boom failed: RuntimeError: kaput"
    r = _call(call("slow", x=1), tools=tools, limits=ToolLimits(timeout=0.1))
    assert r.error and r.text == "error: slow took longer than its limit of 0.1 s"
    r = _call(call("odd", x=1), tools=tools)
    assert r.error and "ValueError: no text for you" in r.text
    r = _call(call("big", x=1), tools=tools, limits=ToolLimits(max_result_chars=50))
    assert not r.error and r.text == "a" * 50 + " ...(cut)"


# -- tool episodes ----------------------------------------------------------------------------

def _env(**kwargs):
    return TextActions(gym.make("TextReasoning-v0", model="tiny", tools=["calculator"],
                                max_new_tokens=kwargs.pop("max_new_tokens", ROOM), **kwargs))


def _seen(env, obs):
    p = env.unwrapped.setup.max_prompt_tokens
    ids = obs["input_ids"][p:][obs["attention_mask"][p:] == 1]
    return env.unwrapped.tokenizer.decode(ids, skip_special_tokens=True)


def test_a_tool_episode_runs_the_call_inserts_the_result_and_scores_the_answer():
    env = _env()
    env.reset(seed=0, options={"index": 0})
    answer = env.unwrapped.examples[0].references[0]
    obs, reward, terminated, truncated, info = env.step(tagged("calculator", expression="40+2"))
    assert reward == 0.0 and not (terminated or truncated)
    assert info["tool_call"] == {"name": "calculator", "arguments": {"expression": "40+2"}, "result": "42",
                                 "error": False}
    assert _seen(env, obs).endswith("</tool_call>\nTool: 42\nAssistant:")
    obs, reward, terminated, truncated, info = env.step(answer)
    assert terminated and reward == 1.0 and info["reward"] == 1.0 and info["return"] == 1.0
    assert (info["tool_calls"], info["tool_errors"]) == (1, 0) and info["tool_tokens"] > 0
    assert info["turn_rewards"] == [0.0, 1.0] and info["text"] == answer
    assert [m["role"] for m in info["conversation"]] == ["user", "assistant", "tool", "assistant"]
    assert info["conversation"][2]["content"] == "42"


def test_an_answer_without_a_call_is_the_whole_episode():
    env = _env()
    env.reset(seed=0, options={"index": 0})
    _, reward, terminated, _, info = env.step(env.unwrapped.examples[0].references[0])
    assert terminated and reward == 1.0 and info["tool_calls"] == 0 and info["calls"] == []


def test_bad_calls_in_an_episode_are_tool_turns_and_the_episode_goes_on():
    env = _env(max_tool_calls=5, max_new_tokens=1500)
    env.reset(seed=0, options={"index": 0})
    bad = ['{"name": "calculator", "arguments": {"expression": "1+1"}',  # malformed JSON
           call("fetch", url="x"), call("calculator", expression=7), call("calculator", expression="9**9**9"),
           call("calculator", expression="1/0")]
    for body in bad:
        obs, reward, terminated, truncated, info = env.step(f"<tool_call>{body}</tool_call>")
        assert reward == 0.0 and not (terminated or truncated) and info["tool_call"]["error"], body
        assert _seen(env, obs).endswith(f"Tool: {info['tool_call']['result']}\nAssistant:")
    _, reward, terminated, _, info = env.step(env.unwrapped.examples[0].references[0])
    assert terminated and reward == 1.0 and (info["tool_calls"], info["tool_errors"]) == (5, 5)


def test_a_call_beyond_max_tool_calls_ends_the_episode_scored_as_no_answer():
    env = _env(max_tool_calls=1)
    env.reset(seed=0, options={"index": 0})
    answer = env.unwrapped.examples[0].references[0]
    env.step(tagged("calculator", expression="1+1"))
    # the second call holds the right answer as its expression: a call is never scored as an answer
    _, reward, terminated, truncated, info = env.step(tagged("calculator", expression=answer))
    assert truncated and not terminated and info["truncated_by"] == "tool_calls"
    assert reward == 0.0 and info["tool_calls"] == 1


def test_a_tool_cannot_write_control_tokens_into_the_conversation():
    env = None

    def leak(x: int) -> str:
        """Returns text holding the EOS token's string."""
        return f"a{env.unwrapped.tokenizer.eos_token}b"

    env = TextActions(gym.make("TextReasoning-v0", model="tiny", tools=[leak], max_new_tokens=ROOM))
    env.reset(seed=0, options={"index": 0})
    obs, *_, info = env.step(tagged("leak", x=1))
    p = env.unwrapped.setup.max_prompt_tokens
    generated = obs["input_ids"][p:][obs["attention_mask"][p:] == 1]
    assert (generated == env.unwrapped.setup.eos_token_id).sum() == 1  # the EOS the env wrote to close the call
    assert _seen(env, obs).endswith("Tool: ab\nAssistant:")
    assert info["tool_call"]["result"] == "ab"  # the record holds what the agent read


def test_vector_env_steps_tool_episodes_like_single_envs():
    kw = dict(task="textenv.task_factories:reasoning", model="tiny", tools=["calculator"], max_new_tokens=ROOM)
    venv = TextVectorEnv(4, **kw)
    singles = [gym.make("TextReasoning-v0", model="tiny", tools=["calculator"], max_new_tokens=ROOM).unwrapped
               for _ in range(4)]
    tok, eos = venv.setup.tokenizer, venv.setup.eos_token_id
    answers = [singles[0].examples[i].references[0] for i in range(4)]
    scripts = [tagged("calculator", expression="2+3") + answers[0],
               "<tool_call>{oops}</tool_call>" + answers[1],
               answers[2],
               tagged("calculator", expression="6*7") + tagged("calculator", expression="1-9") + answers[3]]
    obs, _ = venv.reset(seed=0, options={"index": [0, 1, 2, 3]})
    for i, e in enumerate(singles):
        o, _ = e.reset(seed=0, options={"index": i})
        np.testing.assert_array_equal(obs["input_ids"][i], o["input_ids"])
    # one token per step; a call's closing tag ends the turn, so the rest of a script is the next turn
    queues = [list(tok(s, add_special_tokens=False)["input_ids"]) + [eos] for s in scripts]
    ended = [False] * 4
    for _ in range(ROOM):
        actions = np.array([q.pop(0) if q else eos for q in queues])
        obs, rewards, term, trunc, infos = venv.step(actions)
        for i, e in enumerate(singles):
            if ended[i]:
                continue
            o, r, t, tr, info = e.step(int(actions[i]))
            np.testing.assert_array_equal(obs["input_ids"][i], o["input_ids"])
            assert (r, t, tr) == (rewards[i], term[i], trunc[i])
            if "tool_call" in info:  # a dict info: Gymnasium's vector infos nest it, one array per key
                assert infos["_tool_call"][i] and infos["tool_call"]["result"][i] == info["tool_call"]["result"]
            if t or tr:
                ended[i] = True
                assert info["reward"] == 1.0, (i, info["text"])
                assert info["tool_calls"] == [1, 1, 0, 2][i] and info["tool_errors"] == [0, 1, 0, 0][i]
        if all(ended):
            break
    assert all(ended)


# -- demonstrations ---------------------------------------------------------------------------

def test_sft_demonstrations_label_the_agents_tokens_and_match_the_env_token_for_token():
    from agents.sft import IGNORE, tool_conversation

    env = gym.make("TextReasoning-v0", model="tiny", tools=["calculator"], max_new_tokens=ROOM).unwrapped
    setup, tok = env.setup, env.tokenizer
    ex = setup.examples[0]
    expression = ex.metadata["entry"]["metadata"]["expression"]
    ids, labels = tool_conversation(setup, 0)
    call_ids = tok(tagged("calculator", expression=expression), add_special_tokens=False)["input_ids"]
    answer = tok(ex.references[0], add_special_tokens=False)["input_ids"] + [setup.eos_token_id]
    n = len(call_ids)
    assert ids[:n] == call_ids and labels[:n] == call_ids
    assert ids[-len(answer):] == answer and labels[-len(answer):] == answer
    between = slice(n, len(ids) - len(answer))  # the EOS the env writes after a call, and the tool turn
    assert labels[between] and set(labels[between]) == {IGNORE}
    assert tok.decode(ids[between], skip_special_tokens=True) == f"\nTool: {calculator(expression)}\nAssistant:"
    env.reset(options={"index": 0})
    for token in [t for t, label in zip(ids, labels, strict=True) if label != IGNORE]:
        obs, reward, terminated, truncated, info = env.step(token)
    p = setup.max_prompt_tokens
    assert obs["input_ids"][p:][obs["attention_mask"][p:] == 1].tolist() == ids[:-1]  # the last EOS ends it
    assert terminated and reward == 1.0 and info["tool_calls"] == 1


def test_qa_demonstrations_only_show_answers_the_search_found():
    from agents.sft import tool_conversation

    setup = gym.make("TextQA-v0", model="tiny", tools=["search"]).unwrapped.setup
    shown = skipped = 0
    for i in range(20):
        demo = tool_conversation(setup, i)
        if demo is None:
            skipped += 1
            continue
        shown += 1
        text = setup.tokenizer.decode(demo[0], skip_special_tokens=True)
        assert text.count(setup.examples[i].references[0]) >= 2  # in the search result, then the answer
    assert shown > 0


def test_a_rollout_on_a_tool_env_places_every_action_where_the_env_put_it():
    """The tiny policy, pushed towards EOS and the tokens that may close a call (each makes the env
    decode the turn), rolls out in a tool env: the rollout's layout check passes and each episode's
    score is its return."""
    import torch

    from agents.policy import LMActorCritic
    from agents.rollout import collect

    envs = gym.make_vec("TextReasoning-v0", num_envs=4, model="tiny", tools=["calculator"], max_new_tokens=40)
    setup = envs.unwrapped.setup
    policy = LMActorCritic.from_pretrained("tiny", tokenizer=setup.tokenizer)
    closing = torch.from_numpy(setup.may_close)

    def push(module, args, logits):
        logits[..., closing] += 3.0
        logits[..., setup.eos_token_id] += 1.0
        return logits

    policy.model.lm_head.register_forward_hook(push)
    episodes = collect(envs, policy, [0, 1, 2, 3], seed=0, generator=torch.Generator().manual_seed(0))
    for ep in episodes:
        assert [ep.sequence[q] for q in ep.positions] == ep.actions
        assert ep.episode_return == pytest.approx(ep.info["return"]) and ep.info["tool_calls"] == 0
    assert sum(int(setup.may_close[a]) for ep in episodes for a in ep.actions) > 0


def test_sft_and_ppo_take_a_registered_tool_env_as_the_env_has_it(tmp_path):
    """A registration with ``tools=`` is all a trainer needs: SFT's sequences are the tool
    demonstrations (laid out with the registration's tools and budget), and a PPO iteration on tool
    episodes updates the policy from the agent's tokens."""
    import math

    import torch

    from agents.ppo import PPOConfig, PPOTrainer
    from agents.sft import IGNORE, _sequences
    from textenv.core import TaskSetup
    from textenv.tasks import setup_kwargs_of, task_of

    env_id = "TextReasoningToolsTest-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="textenv.env:TextEnv", vector_entry_point="textenv.vector:TextVectorEnv",
                     kwargs={"task": "textenv.task_factories:reasoning", "difficulty": 1, "tools": ["calculator"],
                             "max_new_tokens": ROOM})
    assert setup_kwargs_of(env_id) == {"tools": ["calculator"], "max_new_tokens": ROOM}
    setup = TaskSetup(task_of(env_id), "train", model="tiny", **setup_kwargs_of(env_id))
    seqs = _sequences(setup, "sft", max_length=1024, limit=4)
    assert len(seqs) == 4
    for ids, labels in seqs:
        text = setup.tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE])
        assert text.startswith('<tool_call>{"name": "calculator"') and "Tool:" not in text
    cfg = PPOConfig(env=env_id, model="tiny", iterations=1, prompts_per_iter=4, epochs=1, minibatch_size=2, lr=1e-3,
                    tensorboard=False, progress=False, checkpoint_every=1, runs=str(tmp_path))
    trainer = PPOTrainer(cfg)
    before = trainer.policy.model.lm_head.weight.clone()
    metrics = trainer.step()
    assert math.isfinite(metrics["losses/policy_loss"]) and math.isfinite(metrics["charts/reward_mean"])
    assert not torch.equal(before, trainer.policy.model.lm_head.weight)
