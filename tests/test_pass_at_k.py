"""Reasoning metrics without a model: pass@k, per-prompt averaging, majority vote, the samples
config, and scoring of hand-made K-sample generations against hand-computed numbers."""

import math
import random

import pytest

from evals.generate import Generation, majority, parse_policy
from evals.metrics import higher_is_better, is_metric, pass_at_k, pass_k_of, per_prompt_means
from evals.run import RunConfig, suite_config
from evals.suite import SuiteConfig, check_config, score_generations

# --- pass@k ------------------------------------------------------------------------------------------


def test_pass_at_k_hand_computed() -> None:
    assert pass_at_k(4, 1, 2) == 0.5  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)  # 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert pass_at_k(4, 3, 1) == 0.75  # k=1 is the share correct, c/n
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 0, 4) == 0.0
    assert pass_at_k(4, 1, 4) == 1.0 and pass_at_k(4, 4, 4) == 1.0  # k=n: any correct
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong: every draw of 2 holds a correct one
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 2), (4, -1, 2), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_names_and_direction() -> None:
    assert pass_k_of("pass@4") == 4 and pass_k_of("pass@16") == 16
    for bad in ("pass@", "pass@0", "pass@04", "pass@-1", "pass@x", "pass4", "pass@²"):
        assert pass_k_of(bad) is None, bad
        assert not is_metric(bad)
    assert higher_is_better("pass@4") is True and higher_is_better("accuracy") is True
    assert is_metric("accuracy") and is_metric("reward/format") and not is_metric("bogus")


def test_per_prompt_means_hand_computed() -> None:
    values = [1.0, 0.0, 0.5, None, float("nan"), 2.0, None]
    prompts = [3, 3, 7, 7, 7, 1, 9]
    # prompt 3: (1 + 0) / 2; prompt 7: 0.5 (None, NaN left out); prompt 1: 2; prompt 9: no value, dropped
    assert per_prompt_means(values, prompts) == [0.5, 0.5, 2.0]
    assert per_prompt_means([0.1, 0.7, 0.3], [0, 1, 2]) == [0.1, 0.7, 0.3]  # one sample: the values, exactly
    with pytest.raises(ValueError):
        per_prompt_means([1.0], [0, 1])


# --- majority vote ------------------------------------------------------------------------------------


def test_majority_keeps_the_most_common_answer_and_breaks_ties_by_the_earliest() -> None:
    assert majority(["7", "12", "12", "3"]) == 1  # 12 twice: its first sample
    assert majority(["12", "7", "7", "12"]) == 0  # 2-2 tie: 12 came first
    assert majority(["a", "b", "c"]) == 0  # all differ: the first
    assert majority(["", "", "5"]) == 2  # empty answers do not vote
    assert majority(["", ""]) == 0
    with pytest.raises(ValueError):
        majority([])


def test_vote_policy_syntax() -> None:
    spec = parse_policy("maj=vote:runs/{task}/sft")
    assert (spec.name, spec.kind, spec.path, spec.n) == ("maj", "majority_vote", "runs/{task}/sft", 4)
    assert parse_policy("rm=bon:x").kind == "best_of_n" and parse_policy("m=x").kind == "model"
    with pytest.raises(ValueError, match="NAME=vote:PATH"):
        parse_policy("maj=vote:")


# --- the samples config -------------------------------------------------------------------------------


def test_sample_counts_parse_and_the_last_item_wins() -> None:
    cfg = suite_config(RunConfig(samples=("TextCount-v0=2", "TextReasoning-v0=4", "TextCount-v0=8")))
    assert cfg.samples == {"TextCount-v0": 8, "TextReasoning-v0": 4}
    for bad in ("TextCount-v0", "TextCount-v0=0", "TextCount-v0=x", "=4", "TextCount-v0=65"):
        with pytest.raises(ValueError, match=f"bad samples '{bad}': expected TASK=K"):
            check_config(suite_config(RunConfig(envs=("TextCount-v0",), policies=("random",), samples=(bad,))))
    for bad in (0, 65, "4", None):  # the Python API's typed value is checked too
        with pytest.raises(ValueError, match="TASK=K"):
            check_config(SuiteConfig(envs=("TextCount-v0",), policies=("random",), samples={"TextCount-v0": bad}))


def test_samples_flag_is_split_on_commas_and_appended_to_the_suites() -> None:
    cfg = suite_config(RunConfig(suite="tools", samples=("TextReasoning-v0=4,TextCount-v0=2", "TextCount-v0=3")))
    assert cfg.samples == {"TextReasoningHard-v0": 2, "TextReasoningTools-v0": 2, "TextReasoning-v0": 4,
                           "TextCount-v0": 3}
    assert suite_config(RunConfig(samples=("TextReasoning-v0=2",))).samples["TextReasoning-v0"] == 2  # the flag wins
    assert suite_config(RunConfig()).samples == suite_config(RunConfig()).samples  # no flag: the suite's own


# --- scoring K samples --------------------------------------------------------------------------------


def _gen(policy: str, index: int, sample: int, reward: float, kl: float | None = None) -> Generation:
    return Generation(policy=policy, task="T", index=index, prompt=f"p{index}", text=f"answer {sample}",
                      references=[], reward=reward, parts={"r": reward}, token_ids=[1], prompt_ids=[2],
                      logprobs=None, scores={} if kl is None else {"kl_to_ref": kl}, sample=sample)


def test_k_samples_are_averaged_per_prompt_then_bootstrapped_over_prompts() -> None:
    base = [_gen("base", 0, j, r, kl) for j, (r, kl) in enumerate([(1.0, 0.1), (0.0, 0.2), (0.5, 0.3), (1.0, 0.4)])]
    base += [_gen("base", 1, j, 0.0, 0.0 if j < 2 else None) for j in range(4)]
    maj = [_gen("maj", 0, 0, 1.0), _gen("maj", 1, 0, 0.0)]
    gens = base + maj
    random.Random(0).shuffle(gens)  # the order they come back from processes in must not matter
    cfg = SuiteConfig(envs=("T",), model="tiny", policies=("base=tiny", "maj=vote:tiny"), n_boot=200)
    df = score_generations(gens, cfg).set_index(["policy", "metric"])
    # base, prompt 0: rewards 1, 0, .5, 1 -> mean .625, 2 of 4 correct; prompt 1: all 0
    assert df.loc[("base", "reward"), "value"] == pytest.approx((0.625 + 0.0) / 2)
    assert df.loc[("base", "accuracy"), "value"] == pytest.approx((0.5 + 0.0) / 2)
    assert df.loc[("base", "pass@4"), "value"] == pytest.approx((1.0 + 0.0) / 2)
    assert df.loc[("base", "kl_to_ref"), "value"] == pytest.approx((0.25 + 0.0) / 2)  # prompt 1: 2 KLs of 0
    assert (df.loc["base", "n"] == 2).all()  # prompts, not samples
    low, high = df.loc[("base", "reward"), ["ci_low", "ci_high"]]
    assert 0.0 <= low and high <= 0.625  # resampled prompt means: never a single sample's 1.0
    # maj: one sample per prompt, so no pass@k; its per-prompt reward against base's per-prompt mean
    assert ("maj", "pass@4") not in df.index and ("maj", "pass@1") not in df.index
    assert df.loc[("maj", "accuracy"), "value"] == 0.5
    assert df.loc[("maj", "win_rate"), "value"] == pytest.approx((1.0 + 0.5) / 2)  # 1 > .625 wins, 0 = 0 ties
    assert ("base", "win_rate") not in df.index
    assert math.isclose(df.loc[("maj", "reward"), "value"], 0.5)


def test_pass_at_k_and_accuracy_respect_the_metrics_filter() -> None:
    gens = [_gen("base", i, j, float(j == 0)) for i in range(3) for j in range(2)]
    cfg = SuiteConfig(envs=("T",), model="tiny", policies=("base=tiny",), metrics=("pass@2",), n_boot=50)
    df = score_generations(gens, cfg)
    assert list(df.metric) == ["pass@2"] and df.value.item() == 1.0 and df.n.item() == 3
