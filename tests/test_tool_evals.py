"""The tools suite: tool episodes as leaderboard rows (calls per episode, call error rate), its
registrations and its pipeline."""

import json

import gymnasium as gym
import pytest

from evals.generate import Generation, _outcome
from evals.metrics import TOOL_METRICS, higher_is_better, task_metrics
from evals.suite import SuiteConfig, _group_rows
from textenv.wrappers import TextActions


def _tagged(expression: str) -> str:
    return "<tool_call>" + json.dumps({"name": "calculator", "arguments": {"expression": expression}}) + \
        "</tool_call>"


def _episode(*replies: str) -> tuple[dict, object]:
    env = TextActions(gym.make("TextReasoning-v0", model="tiny", tools=["calculator"], max_new_tokens=600))
    env.reset(seed=0, options={"index": 0})
    for reply in replies:
        *_, terminated, truncated, info = env.step(reply)
        if terminated or truncated:
            return info, env.unwrapped.setup
    raise AssertionError("the episode did not end")


def test_a_tool_episode_is_one_row_with_its_calls_and_errors():
    info, setup = _episode(_tagged("1/0"), _tagged("40+2"), "42")
    row = _outcome(info, setup, 0)
    assert row["references"] == list(setup.examples[0].references)  # the task's, not a conversation's replies
    assert (row["tool_calls"], row["tool_errors"]) == (2, 1)
    assert row["text"].splitlines()[-1] == "42" and row["text"].count("<tool_call>") == 2
    assert row["reward"] == info["return"]
    plain = _outcome(*_episode("42")[:1], setup, 0)
    assert (plain["tool_calls"], plain["tool_errors"]) == (0, 0)


def _gen(index: int, sample: int, calls: int | None, errors: int | None, reward: float = 1.0) -> Generation:
    return Generation(policy="p", task="TextReasoningTools-v0", index=index, prompt="q", text="a", references=["a"],
                      reward=reward, parts={}, token_ids=[1], prompt_ids=[2], sample=sample,
                      tool_calls=calls, tool_errors=errors)


def test_calls_per_episode_and_the_error_rate_are_averaged_per_prompt():
    gens = [_gen(0, 0, 2, 1), _gen(0, 1, 0, 0), _gen(1, 0, 1, 0), _gen(1, 1, 1, 1)]
    rows = {r["metric"]: r for r in _group_rows("p", "TextReasoningTools-v0", gens, None,
                                               SuiteConfig(envs=("TextReasoningTools-v0",))).rows}
    assert rows["tool_calls"]["value"] == pytest.approx((1.0 + 1.0) / 2)
    # prompt 0: one episode with calls (1 of 2 failed); prompt 1: 0 and 1 of 1 failed
    assert rows["tool_error_rate"]["value"] == pytest.approx((0.5 + 0.5) / 2)
    assert rows["tool_error_rate"]["n"] == 2
    no_tools = _group_rows("p", "TextReasoning-v0", [_gen(0, 0, None, None)], None,
                           SuiteConfig(envs=("TextReasoning-v0",))).rows
    assert not {r["metric"] for r in no_tools} & set(TOOL_METRICS)


def test_a_tool_env_headline_shows_the_calls():
    assert task_metrics.__wrapped__("TextReasoningTools-v0").headline == (
        "accuracy", "pass@k", "Δ", "tool_calls", "tool_error_rate", "length", "kl_to_ref")
    assert task_metrics.__wrapped__("TextReasoningHard-v0").headline == task_metrics("TextReasoning-v0").headline
    assert not higher_is_better("tool_error_rate")


def test_the_tools_suite_pairs_two_levels_and_trains_rl_with_tools_only():
    from agents import ppo, sft
    from agents.pipeline import _preset, plan_stages, stage_dirs
    from evals.run import QUICK_STAGES, SUITES, RunConfig, _pipeline_config, suite_config
    from textenv.tasks import setup_kwargs_of, task_of

    cfg = SUITES["tools"].config
    hard, tools = cfg.envs
    assert setup_kwargs_of(tools) == {"tools": ("calculator",), "max_new_tokens": 104} and not setup_kwargs_of(hard)
    assert task_of(hard).name == task_of(tools).name == "reasoning/basic_arithmetic"
    assert cfg.skip == (("ppo-task", hard),) and dict(cfg.starts) == {"sft": "base", "ppo-task": "sft"}
    assert cfg.decoding.max_new_tokens is None and cfg.limit >= 200  # the envs' own budgets, >= 200 problems
    assert cfg.packed and {"pass@2", "tool_calls", "tool_error_rate"} <= set(cfg.metrics)
    run = suite_config(RunConfig(suite="tools"))
    assert run.metrics == cfg.metrics and run.packed  # the suite's own, unless --metrics says otherwise
    assert suite_config(RunConfig(suite="tools", metrics=("accuracy",))).metrics == ("accuracy",)
    assert _preset(sft.PRESETS, "quick", hard) is sft.PRESETS["quick-reasoning"]
    demos = _preset(sft.PRESETS, "quick", tools)
    assert demos.limit is not None and demos.limit <= 64  # deliberately few demonstrations: RL has room
    assert _preset(ppo.PRESETS, "quick", tools).advantage == "grpo"
    stages = {env: [s.name for s in plan_stages(pc, stage_dirs(pc))]
              for env in (hard, tools) for pc in [_pipeline_config(env, "quick", "tiny")]}
    assert stages == {hard: ["sft"], tools: ["sft", "ppo_task"]}
    assert QUICK_STAGES[hard] == {"ppo_reward": "none"}
