"""TextQA-v0: Disfl-QA data split by passage, SQuAD's answer scores, the env and the suite's columns."""

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from evals.generate import Decoding
from evals.metrics import load_metric
from evals.suite import SuiteConfig, evaluate_suite
from textenv.data.disflqa import detokenize, load_rows, split_rows
from textenv.rewards import Completion, resolve
from textenv.rewards.qa import best_over, exact_match, normalize_answer, token_f1
from textenv.task_factories import UNANSWERABLE_ANSWER, qa


def test_squad_normalisation_and_scores_by_hand():
    assert normalize_answer("The Manhattan Project.") == "manhattan project"
    assert normalize_answer("an  A-bomb, (the) test") == "abomb test"
    assert exact_match("the Manhattan Project!", "Manhattan project") == 1.0
    assert exact_match("Manhattan", "Manhattan Project") == 0.0
    # pred "free market free" vs ref "the free market": 2 shared tokens (a bag: "free" once), P 2/3, R 1
    assert token_f1("free market free", "the free market") == pytest.approx(0.8)
    assert token_f1("Friedman", "Milton Friedman and others") == pytest.approx(2 * 1 * (1 / 4) / (1 + 1 / 4))
    assert token_f1("nothing shared", "Chicago") == 0.0
    assert token_f1("the", "a") == 1.0 and token_f1("the", "Chicago") == 0.0  # both empty once normalised
    assert best_over(token_f1, "Chicago", ["Boston", "Chicago school"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="needs at least one reference"):
        best_over(token_f1, "x", [])


def test_rewards_read_the_first_line_and_the_metric_module_agrees():
    done = [Completion("", "Chicago school\nbecause the passage says so", references=("the Chicago school",)),
            Completion("", "  1953 ", references=("in 1953", "1953")),
            Completion("", "Boston", references=("Chicago",))]
    assert resolve("qa_f1")(done) == [1.0, 1.0, 0.0]
    assert resolve("exact_match")(done) == [1.0, 1.0, 0.0]
    scores = load_metric("squad").compute(predictions=["Chicago school", "1953", "Boston"],
                                          references=[list(c.references) for c in done], use_aggregator=False)
    assert scores == {"exact_match": [1.0, 1.0, 0.0], "f1": [1.0, 1.0, 0.0]}
    with pytest.raises(Exception, match="at least one reference"):
        resolve("qa_f1")([Completion("", "x")])


def test_disflqa_is_detokenised_and_split_by_passage():
    assert detokenize("Earth ' s air ( see Occurrence ) , 1953 .") == "Earth's air (see Occurrence), 1953."
    rows = load_rows()
    assert len(rows) == 1000 and sum(r.answer is None for r in rows) == 245
    splits = {s: split_rows(rows, s) for s in ("train", "validation", "test")}
    assert sum(map(len, splits.values())) == 1000
    passages = {s: {r.passage for r in v} for s, v in splits.items()}
    assert not passages["train"] & passages["test"] and not passages["validation"] & passages["test"]
    assert not passages["train"] & passages["validation"]
    with pytest.raises(ValueError, match="unknown split"):
        split_rows(rows, "dev")


def test_qa_task_leaves_out_unanswerable_questions_unless_asked():
    task = qa()
    sizes = {s: len(task.load(s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 532, "validation": 76, "test": 147}
    ex = task.load("test")[0]
    assert ex.text.startswith("Context: ") and "\n\nQuestion: " in ex.text and ex.references[0]
    assert all(e.metadata["answerable"] for e in task.load("test"))
    both = qa(unanswerable=True)
    test = both.load("test")
    assert len(test) == 195 and UNANSWERABLE_ANSWER in both.template
    assert {e.references[0] for e in test if not e.metadata["answerable"]} == {UNANSWERABLE_ANSWER}
    assert UNANSWERABLE_ANSWER not in task.template
    with pytest.raises(ValueError, match="unanswerable must be True or False"):
        qa(unanswerable="yes")


def test_qa_env_passes_the_checker_and_scores_the_reference():
    env = gym.make("TextQA-v0", model="tiny")
    check_env(env.unwrapped)
    _, info = env.reset(seed=0, options={"index": 3})
    ref = env.unwrapped.examples[3].references[0]
    for token in env.unwrapped.tokenizer(ref, add_special_tokens=False)["input_ids"]:
        _, reward, terminated, truncated, info = env.step(token)
        assert not truncated
    _, reward, terminated, _, info = env.step(env.unwrapped.setup.eos_token_id)
    assert terminated and reward == 1.0 and info["text"].strip() == ref


def test_suite_reports_exact_match_and_f1_on_qa_only():
    cfg = SuiteConfig(envs=("TextQA-v0", "TextCount-v0"), model="tiny", policies=("base=tiny", "reference"),
                      limit=4, decoding=Decoding(temperature=0.7, max_new_tokens=6, batch_size=4), n_boot=50,
                      progress=False, metrics=None)
    df = evaluate_suite(cfg)
    qa_rows = df[df.task == "TextQA-v0"]
    ref = qa_rows[qa_rows.policy == "reference"].set_index("metric").value
    assert ref["exact_match"] == 1.0 and ref["f1"] == 1.0 and ref["reward"] == 1.0
    base = qa_rows[qa_rows.policy == "base"].set_index("metric").value
    assert base["f1"] == pytest.approx(base["reward"])  # the env's reward is the suite's f1
    assert not {"exact_match", "f1"} & set(df[df.task == "TextCount-v0"].metric)
