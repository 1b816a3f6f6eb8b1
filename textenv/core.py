"""What the single env and the vector env share: a task bound to a tokenizer, a split and a reward.

:class:`TaskSetup` encodes prompts (template, chat template, truncation to the budget, cached per
example), lays out observations, turns generated token ids into :class:`Completion` records and
scores them through :func:`textenv.rewards.score`. Neither env class duplicates any of this.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from textenv.models import DEFAULT_MODEL, is_tiny, load_tokenizer
from textenv.rewards import Completion, RewardError, resolve, score
from textenv.tasks import Example, Task, resolve_task
from textenv.tools import ToolLimits, describe, resolve_tools

__all__ = ["MAX_TEMPLATE_CHARS", "PromptTruncationWarning", "TaskSetup", "EncodedPrompt", "check_seed"]

logger = logging.getLogger(__name__)

# The tiny tokenizer is trained on at most this many training examples (prompts + references).
_TINY_CORPUS_EXAMPLES = 2000

MAX_TEMPLATE_CHARS = 10_000
"""The longest ``prompt_template`` an env accepts, in characters: ample for an instruction around
``{text}``, and the tiny tokenizer, trained on every formatted prompt, builds in about a second at this
size (a 1 MB template took minutes)."""


TOOL_EXTRA_TOKENS = 96
"""With tools, the default ``max_new_tokens`` is the task's plus this: room for a call (about 30 tokens
for the calculator's), its result turn and the answer, twice over."""


class PromptTruncationWarning(UserWarning):
    """A prompt was longer than ``max_prompt_tokens`` and kept only its last tokens."""


@dataclass(frozen=True)
class EncodedPrompt:
    text: str
    ids: np.ndarray  # int64, at most max_prompt_tokens long
    truncated: bool


@functools.lru_cache(maxsize=8)
def _tiny_tokenizer(corpus: tuple[str, ...]):
    return load_tokenizer("tiny", corpus)


class TaskSetup:
    """A task, its examples for one split, a tokenizer, a reward and the token budgets."""

    def __init__(
        self,
        task: Task | str | Callable[..., Task],
        split: str = "train",
        model: str = DEFAULT_MODEL,
        tokenizer: Any = None,
        reward: Any = None,
        max_prompt_tokens: int | None = None,
        max_new_tokens: int | None = None,
        prompt_template: str | None = None,
        chat_template: bool | None = None,
        tools: Any = None,
        max_tool_calls: int = 3,
        tool_timeout: float = 2.0,
        max_tool_result_chars: int = 400,
        **task_kwargs: Any,
    ) -> None:
        # tools first: a bad tool or limit is refused before the task loads anything
        self.tools = resolve_tools(tools) if tools is not None else ()
        self.tool_limits = ToolLimits(max_tool_calls, tool_timeout, max_tool_result_chars)
        self.tool_table = {t.name: t for t in self.tools}
        self.task = resolve_task(task, **task_kwargs)
        self.split = split
        # the cheap checks first: nothing is loaded or built for arguments that are refused
        self.template = check_template(prompt_template if prompt_template is not None else self.task.template)
        _check_chat_template(chat_template)
        self.examples: list[Example] = self._load_examples()
        self.max_prompt_tokens = _budget("max_prompt_tokens", max_prompt_tokens, self.task.max_prompt_tokens)
        self.max_new_tokens = _budget("max_new_tokens", max_new_tokens,
                                      self.task.max_new_tokens + (TOOL_EXTRA_TOKENS if self.tools else 0))
        self._bind_tokenizer(tokenizer, model)
        self.use_chat = (self.task.chat if chat_template is None else chat_template) and bool(
            getattr(self.tokenizer, "chat_template", None)
        )
        self.reward = resolve(reward if reward is not None else self.task.reward)
        if self.tools and max_prompt_tokens is None:  # the default budget grows by the tools' description
            self.max_prompt_tokens += len(self.tokenizer(self.system_prompt(), add_special_tokens=False)["input_ids"])
        self.length = self.max_prompt_tokens + self.max_new_tokens
        self.turns = self.task.turns  # > 1: textenv.turns inserts the other side's turns
        self.max_turn_tokens = min(self.task.max_turn_tokens or self.max_new_tokens, self.max_new_tokens)
        self.may_close = _may_close(self.tokenizer, self.vocab_size) if self.tools else np.zeros(self.vocab_size, bool)
        self._cache: dict[int, EncodedPrompt] = {}
        self.turn_cache: dict[tuple[int, int], list[int]] = {}  # textenv.turns.user_turn_ids, per (example, turn)
        self._warned = False

    def _load_examples(self) -> list[Example]:
        """The split's examples, as the env shows them: with tools, as the task reads with them (QA with
        ``search``: the passage left out). ``self._loaded`` keeps them as the task wrote them (the tiny
        tokenizer's corpus)."""
        self._loaded = self.task.load(self.split)
        if not self._loaded:
            raise ValueError(f"task {self.task.name!r} has no examples in split {self.split!r}")
        if not (self.tools and self.task.with_tools is not None):
            return self._loaded
        names = frozenset(self.tool_table)
        return [self.task.with_tools(ex, names) for ex in self._loaded]

    def _bind_tokenizer(self, tokenizer: Any, model: str) -> None:
        """Take ``tokenizer``, or load ``model``'s (the tiny one is trained on this task's texts), and the
        ids an env needs from it; one without EOS is refused (no episode could end)."""
        if tokenizer is None:
            tokenizer = _tiny_tokenizer(self._tiny_corpus()) if is_tiny(model) else load_tokenizer(model)
        self.tokenizer = tokenizer
        self.model_name = model
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; episodes could never terminate")
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                else tokenizer.eos_token_id)
        self.vocab_size = len(tokenizer)

    @property
    def multi_turn(self) -> bool:
        """Whether episodes have several agent turns (:mod:`textenv.turns`): a task with ``turns > 1``,
        or any task with tools."""
        return self.turns > 1 or bool(self.tools)

    def system_prompt(self) -> str | None:
        """The task's system message, followed by the tools' description when the env has tools."""
        if not self.tools:
            return self.task.system
        tools = describe(self.tools)
        return f"{self.task.system}\n\n{tools}" if self.task.system else tools

    def _tiny_corpus(self) -> tuple[str, ...]:
        train = self._loaded if self.split == "train" else self.task.load("train")
        texts = []
        for ex in train[:_TINY_CORPUS_EXAMPLES]:
            texts.append(self.template.format(text=ex.text))
            texts.extend(ex.references)
        return tuple(texts)

    # -- spaces ----------------------------------------------------------------------------

    def observation_space(self) -> spaces.Dict:
        return spaces.Dict({
            "input_ids": spaces.Box(0, self.vocab_size - 1, (self.length,), np.int64),
            "attention_mask": spaces.Box(0, 1, (self.length,), np.int8),
        })

    def action_space(self) -> spaces.Discrete:
        return spaces.Discrete(self.vocab_size)

    # -- prompts ---------------------------------------------------------------------------

    def prompt_text(self, example: Example) -> str:
        user = self.template.format(text=example.text)
        system = self.system_prompt()
        if not self.use_chat:
            # a conversation without a chat template is written as "User: ...\nAssistant:" turns
            if not self.multi_turn:
                return user
            return f"{system}\n\nUser: {user}\nAssistant:" if self.tools else f"User: {user}\nAssistant:"
        messages = [{"role": "user", "content": user}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, index: int) -> EncodedPrompt:
        """The prompt of example ``index``; longer than the budget keeps its last tokens (the
        instruction and the generation cue sit at the end) and warns once per env."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        text = self.prompt_text(self.examples[index])
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        truncated = len(ids) > self.max_prompt_tokens
        if truncated:
            if not self._warned:
                warnings.warn(
                    f"prompt {index} of {self.task.name!r}/{self.split} has {len(ids)} tokens, more "
                    f"than max_prompt_tokens={self.max_prompt_tokens}; keeping its last "
                    f"{self.max_prompt_tokens} tokens (info['prompt_truncated'] marks such episodes; "
                    "this warning is shown once per env)",
                    PromptTruncationWarning,
                    stacklevel=4,
                )
                self._warned = True
            ids = ids[-self.max_prompt_tokens:]
        if not ids:
            ids = [self.eos_token_id]  # an empty prompt still needs one token to condition on
        enc = EncodedPrompt(text=text, ids=np.asarray(ids, dtype=np.int64), truncated=truncated)
        self._cache[index] = enc
        return enc

    def check_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"options['index'] must be an int, got {type(index).__name__} {index!r}")
        if not 0 <= index < len(self.examples):
            raise IndexError(
                f"options['index']={index} is out of range for {len(self.examples)} examples in "
                f"split {self.split!r}"
            )
        return int(index)

    def write_prompt(self, ids: np.ndarray, mask: np.ndarray, enc: EncodedPrompt) -> None:
        """Lay a prompt into one observation row: left-padded into the first max_prompt_tokens."""
        ids[:] = self.pad_token_id
        mask[:] = 0
        n = len(enc.ids)
        ids[self.max_prompt_tokens - n:self.max_prompt_tokens] = enc.ids
        mask[self.max_prompt_tokens - n:self.max_prompt_tokens] = 1

    # -- completions -----------------------------------------------------------------------

    def completion(self, index: int, token_ids: Sequence[int], ended_with_eos: bool) -> Completion:
        example = self.examples[index]
        return Completion(
            prompt=self.encode(index).text,
            text=self.tokenizer.decode(list(token_ids), skip_special_tokens=True),
            token_ids=tuple(int(t) for t in token_ids),
            references=example.references,
            metadata=example.metadata,
            ended_with_eos=ended_with_eos,
        )

    def score(self, completions: Sequence[Completion]) -> tuple[list[float], dict[str, list[float]]]:
        return score(self.reward, completions)

    def final_info(self, index: int, c: Completion, total: float, parts: Mapping[str, float]) -> dict:
        return {
            "text": c.text,
            "prompt": c.prompt,
            "reference": c.reference,
            "references": c.references,
            "index": index,
            "num_tokens": len(c.token_ids),
            "ended_with_eos": c.ended_with_eos,
            "prompt_truncated": self.encode(index).truncated,
            "reward": total,
            "reward_parts": dict(parts),
        }


def check_action(action: Any, vocab_size: int) -> int:
    """A token id from ``action`` or a clear error: ints and 0-d integer arrays only."""
    if isinstance(action, np.ndarray):
        if action.shape != ():
            raise ValueError(f"action must be a scalar token id, got an array of shape {action.shape}")
        action = action[()]
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise TypeError(f"action must be an integer token id, got {type(action).__name__} {action!r}")
    if not 0 <= action < vocab_size:
        raise ValueError(f"action {action} is out of range: token ids are in [0, {vocab_size})")
    return int(action)


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """A reset seed (``None`` or an integer >= 0, numpy integers included) or a clear error, checked
    before anything is reseeded, so a refused reset leaves every generator as it was."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 0 or None, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be an integer >= 0 or None, got {seed}")
    return int(seed)


def _check_chat_template(chat_template: Any) -> None:
    if chat_template is not None and not isinstance(chat_template, bool):
        raise ValueError(f"chat_template must be True, False or None (the task's choice): it switches the "
                         f"tokenizer's own chat template on or off, got {chat_template!r}")


def _may_close(tokenizer: Any, vocab_size: int) -> np.ndarray:
    """Which tokens' text holds the ">" that may close a tool call: only at those does an env with tools
    decode the turn to look for "</tool_call>"."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    return np.array([">" in p if isinstance(p, str) else False for p in pieces], dtype=bool)


def _budget(name: str, value: Any, default: int) -> int:
    """A token budget: ``None`` means the task's default; anything else must be an integer >= 1 (``0``
    does not quietly mean "the default", and ``2.5`` is not rounded)."""
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1 (or None for the task's default), got {value!r}")
    return int(value)


def check_template(template: Any) -> str:
    """``template`` if formatting a sample prompt with it works and shows the prompt text: ``"{{text}}"``
    (a literal ``{text}``), unknown fields (``"{text} {other}"``) and templates over
    :data:`MAX_TEMPLATE_CHARS` characters are refused, naming the problem."""
    if not isinstance(template, str):
        raise ValueError(f"prompt_template must be a string containing '{{text}}', got {template!r}")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"prompt_template has {len(template):,} characters, more than the limit: at most "
                         f"{MAX_TEMPLATE_CHARS:,} (textenv.core.MAX_TEMPLATE_CHARS); put long text in the task's "
                         "examples, not the template")
    sample = "\x00sample prompt\x00"
    try:
        formatted = template.format(text=sample)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"prompt_template {template!r} cannot be formatted with only 'text': "
                         f"{type(exc).__name__}: {exc}") from None
    if sample not in formatted:
        raise ValueError(f"prompt_template must contain the field '{{text}}' (escaped braces do not count), "
                         f"got {template!r}")
    return template


def check_dense(rewards: Any) -> None:
    """A dense reward is the difference of two finite totals, which can still overflow (``1e308 -
    -1e308``): refuse it like any non-finite score, before the env commits the step."""
    values = np.asarray(rewards, dtype=np.float64)
    if not np.isfinite(values).all():
        raise RewardError(f"the reward's step difference is not finite ({values[~np.isfinite(values)][0]}); "
                          "scores this large cannot be differenced: rescale the reward")
