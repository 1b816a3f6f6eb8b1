"""The per-sub-env KV cache of a rollout: a causal LM stepped token by token through an env.

A textenv vector env hands the policy a whole observation (prompt + generated tokens) at every
step. :class:`CachedLM` keeps one KV-cache row per sub-env across those steps (in a
:class:`CacheState`) and feeds the model only what is new: one decode step for a row whose
observation grew by one token, one forward over the new tokens for a row whose observation grew by
several (the turn a multi-turn env inserted), a prefill for a row whose episode is new (an autoreset,
a reset), and nothing for a finished row. Rows that share a prompt (best-of-n, GRPO/RLOO groups) are prefilled
once and their cache rows copied. Once a cache is large, a decode step writes into spare columns of
preallocated key/value buffers (``RESERVE_COLUMNS`` at a time) instead of re-concatenating it. All
knowledge of transformers' cache classes (``DynamicCache``, ``cache.layers[i].keys``) lives in this
file.

Used by :class:`agents.policy.LMActorCritic` (with its value head as ``head``) and by NLPO's
masking model (:class:`agents.masking.TopKMasker`, no head).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from textenv.models import forward_with_cache

__all__ = ["CachedLM", "CacheState", "left_pad", "pad", "positions", "score_forward", "score_hidden"]


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: each row's first real token is position 0."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def pad(seqs: Sequence[Sequence[int] | np.ndarray], pad_token_id: int, side: Literal["left", "right"] = "left",
        width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences as one ``(ids, attention_mask)`` batch of ``max(width, longest)`` columns, the
    one padding function of the agents: ``"left"`` for prompts (the layout every forward here uses:
    each row's last real token in the last column), ``"right"`` for what follows a prompt (generated
    tokens, action columns, SFT sequences). ``pad_token_id`` fills the padding; any int does (labels
    padded with -100)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    n = max(width, max((len(x) for x in seqs), default=0))
    ids = torch.full((len(seqs), n), pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, x in enumerate(seqs):
        cols = slice(n - len(x), n) if side == "left" else slice(0, len(x))
        ids[j, cols] = torch.as_tensor(x, dtype=torch.long)
        mask[j, cols] = 1
    return ids, mask


def left_pad(seqs: Sequence[Sequence[int] | np.ndarray], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pad` on the left: prompts as one batch."""
    return pad(seqs, pad_token_id, "left")


def score_forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  logits_to_keep: int, prompt_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward over stored episodes: the last ``logits_to_keep`` positions' logits and the last
    hidden states (of every position, or at least of those ``logits_to_keep``), with the same
    position ids as the cached path.

    ``prompt_len``: the rows are ``[left-padded prompt | generated tokens]`` with the prompt in the
    first ``prompt_len`` columns. When prompts repeat (GRPO/RLOO groups, best-of-n), each distinct
    prompt is run once and its KV cache shared by its rows, gradients included: the prompt's
    activations are stored once per prompt instead of once per sample, which is most of a group's
    memory and compute in the update (the values are the plain forward's up to float rounding).
    """
    logits, hidden = _score(model, input_ids, attention_mask, logits_to_keep, prompt_len)
    return logits, hidden


def score_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 prompt_len: int | None = None) -> torch.Tensor:
    """:func:`score_forward`'s last hidden states alone, from the model's decoder: no LM head, and
    no other layer's hidden states kept (``output_hidden_states`` holds every layer's, 1.4 GB for 64
    rows of 300 tokens), for a caller that applies the head where it needs it."""
    return _score(model, input_ids, attention_mask, None, prompt_len)[1]


def _run(model: nn.Module, input_ids: torch.Tensor, cache: Any, logits_to_keep: int | None,
         **kwargs: Any) -> tuple[torch.Tensor | None, torch.Tensor, Any]:
    """``(logits, last hidden states, cache)`` of one forward; ``logits_to_keep=None``: the decoder
    alone (no logits)."""
    if logits_to_keep is None:
        out, cache = forward_with_cache(model.get_decoder(), input_ids, cache, **kwargs)
        return None, out.last_hidden_state, cache
    out, cache = forward_with_cache(model, input_ids, cache, output_hidden_states=True,
                                    logits_to_keep=logits_to_keep, **kwargs)
    return out.logits, out.hidden_states[-1], cache


def _score(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int | None,
           prompt_len: int | None) -> tuple[Any, torch.Tensor]:
    keep = 1 if logits_to_keep is None else logits_to_keep
    if prompt_len is not None and 0 < prompt_len < input_ids.shape[1] and keep <= \
            input_ids.shape[1] - prompt_len + 1 and not _checkpointing(model):
        shared = _shared_prompt_forward(model, input_ids, attention_mask, logits_to_keep, prompt_len)
        if shared is not None:
            return shared
    if logits_to_keep is None:
        out = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=positions(attention_mask), use_cache=False)
        return None, out.last_hidden_state
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions(attention_mask),
                output_hidden_states=True, logits_to_keep=logits_to_keep, use_cache=False)
    return out.logits, out.hidden_states[-1]


def _checkpointing(model: nn.Module) -> bool:
    """Whether activation checkpointing is on (it turns the cache off in training mode)."""
    flag = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x
    return bool(getattr(model, "is_gradient_checkpointing", False) if flag is None else flag)


def _shared_prompt_forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           logits_to_keep: int | None, p: int) -> tuple[Any, torch.Tensor] | None:
    """:func:`score_forward` over distinct prompts once, then the generated tokens of every row on
    a copy of its prompt's cache; ``None`` when no prompt repeats (or the model keeps no cache)."""
    rows = torch.cat([input_ids[:, :p], attention_mask[:, :p].to(input_ids.dtype)], 1)
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    if unique.shape[0] == rows.shape[0]:
        return None
    umask = unique[:, p:].to(attention_mask.dtype)
    first, prompt_hidden, cache = _run(model, unique[:, :p], None, None if logits_to_keep is None else 1,
                                       attention_mask=umask, position_ids=positions(umask))
    if cache is None:
        return None
    # Each row reads its own prompt's keys and values, gradients adding up over the group. By
    # index_select, not x[inverse]: indexing's backward (index_put_ with accumulate) sums a group's
    # gradients in a thread-dependent order on the CPU, so GRPO/RLOO updates were not reproducible.
    def rows_of(x: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, inverse)

    for layer in cache.layers:
        layer.keys, layer.values = rows_of(layer.keys), rows_of(layer.values)
    logits, hidden, _ = _run(model, input_ids[:, p:], cache, logits_to_keep, attention_mask=attention_mask,
                             position_ids=positions(attention_mask)[:, p:])
    # the prompt's last position predicts the first generated token
    hidden = torch.cat([rows_of(prompt_hidden[:, -1:]), hidden], 1)
    if logits_to_keep is None:
        return None, hidden
    return torch.cat([rows_of(first[:, -1:]), logits], 1)[:, -logits_to_keep:], hidden


RESERVE_COLUMNS = 32
"""Spare columns a rollout's cache keeps past its last token, so decoding writes into them."""
RESERVE_MIN_BYTES = 2 << 20
"""Layers whose keys take less than this after a prefill keep transformers' concatenating cache,
which was the faster of the two below it (the timings: leaderboards/README.md)."""


@functools.cache
def _reserved_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A ``DynamicLayer`` whose keys and values are the filled prefix of a buffer with spare
        columns: a decode step writes one column instead of re-concatenating the whole cache (a
        copy of every row's keys and values per layer per token, the largest cost of a step once
        the forward is cheap). When the buffer is full, or the prefix was replaced (a splice, a
        row gather), the next update copies it into a new buffer with ``RESERVE_COLUMNS`` to spare."""

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            n, q = self.keys.shape[-2], key_states.shape[-2]
            bufs = getattr(self, "_bufs", None)
            if bufs is None or not (_prefix_of(self.keys, bufs[0]) and _prefix_of(self.values, bufs[1])) \
                    or n + q > bufs[0].shape[-2]:
                bufs = tuple(_grown(t, n + q + RESERVE_COLUMNS) for t in (self.keys, self.values))
                self._bufs = bufs
            bufs[0][..., n:n + q, :] = key_states
            bufs[1][..., n:n + q, :] = value_states
            self.keys, self.values = bufs[0][..., :n + q, :], bufs[1][..., :n + q, :]
            return self.keys, self.values

    return ReservedLayer


def _prefix_of(t: torch.Tensor, buf: torch.Tensor) -> bool:
    """Whether ``t`` is ``buf[..., :n, :]`` (so writing past it into ``buf`` extends it)."""
    return t.data_ptr() == buf.data_ptr() and t.stride() == buf.stride() and t.shape[:-2] == buf.shape[:-2]


def _grown(t: torch.Tensor, columns: int) -> torch.Tensor:
    buf = t.new_empty((*t.shape[:-2], columns, t.shape[-1]))
    buf[..., :t.shape[-2], :] = t
    return buf


def _reserve(cache: Any) -> None:
    """Make ``cache``'s plain ``DynamicLayer`` s of at least ``RESERVE_MIN_BYTES`` append into spare
    columns (``ReservedLayer``); other layer kinds (sliding windows, ...) are left as they are."""
    from transformers.cache_utils import DynamicLayer

    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and layer.is_initialized and \
                layer.keys.numel() * layer.keys.element_size() >= RESERVE_MIN_BYTES:
            swapped = _reserved_layer_class()()
            swapped.__dict__.update(layer.__dict__)
            cache.layers[i] = swapped


COMPACT_WASTE = 0.25
"""An extension that leaves more than this share of the cache's columns masked in every row is
followed by :func:`_compact`. Rows end their turns on different steps, and each extension appends
its block's columns to every row (masked for all but the extended ones); left there, those columns
would be attended over (masked) by every later decode step."""


def _compact(state: CacheState) -> None:
    """Drop the cache columns that no row needs: each row's real columns move right, in order, into
    the width of the fullest row (its keys and values already carry their rotary positions, and
    ``next_pos`` keeps each row's next position, so attention is unchanged)."""
    mask = state.cache_mask
    t = mask.shape[1]
    width = int(mask.sum(1).max())
    if t - width <= COMPACT_WASTE * t:
        return
    # a stable sort of 0/1 puts each row's masked columns first and keeps its real ones in order
    keep = torch.sort(mask.to(torch.int8), dim=1, stable=True).indices[:, t - width:]
    for layer in state.cache.layers:
        b, h, _, d = layer.keys.shape
        index = keep.view(b, 1, width, 1).expand(b, h, width, d)
        layer.keys, layer.values = layer.keys.gather(2, index), layer.values.gather(2, index)
    state.cache_mask = mask.gather(1, keep)


class CacheState:
    """The per-sub-env KV cache of one rollout, and what each row of it holds."""

    def __init__(self, num_envs: int, max_prompt_tokens: int) -> None:
        self.num_envs = num_envs
        self.prompt_len = max_prompt_tokens
        self.cache: Any = None
        self.cache_mask: torch.Tensor | None = None  # (B, T): which cached slots are real tokens
        self.next_pos = torch.zeros(num_envs, dtype=torch.long)
        self.fed = np.full(num_envs, -1, dtype=np.int64)  # generated tokens already in the cache
        # the prompt part of the observation each cached row was built from (which episode it holds)
        self.prompt_ids = np.zeros((num_envs, max_prompt_tokens), dtype=np.int64)
        self.prompt_mask = np.zeros((num_envs, max_prompt_tokens), dtype=np.int64)
        self.known = np.zeros(num_envs, dtype=bool)  # rows whose cache holds an episode at all
        self.logits: torch.Tensor | None = None  # (B, V) next-token logits per row
        self.values: torch.Tensor | None = None  # (B,)

    def invalidate(self) -> None:
        """Forget every cached row (e.g. after the weights changed)."""
        self.fed[:] = -1
        self.known[:] = False


class CachedLM:
    """A causal LM that steps a rollout with a per-sub-env KV cache (see the module docstring).

    ``head`` maps the last hidden state to a per-row scalar (a value head, in fp32); without one,
    ``state.values`` stays zero. ``prefill_chunk``: distinct prompts per prefill forward (prompts
    are sorted by length first, so a chunk pads its rows to about their own length).
    """

    def __init__(self, model: nn.Module, pad_token_id: int,
                 head: Callable[[torch.Tensor], torch.Tensor] | None = None, prefill_chunk: int = 8) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.prefill_chunk = prefill_chunk
        self._head_fn = head

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._head_fn is None:
            return torch.zeros(hidden.shape[0], device=hidden.device)
        return self._head_fn(hidden)

    def _prefill_in_chunks(self, state: CacheState, rows: list[int], contexts: dict[int, np.ndarray]) -> None:
        groups: dict[bytes, list[int]] = {}  # identical contexts stay in one chunk (prefilled once)
        for i in rows:
            groups.setdefault(contexts[i].tobytes(), []).append(i)
        ordered = sorted(groups.values(), key=lambda g: -len(contexts[g[0]]))  # longest first: no regrowth
        for start in range(0, len(ordered), self.prefill_chunk):
            chunk = [i for g in ordered[start:start + self.prefill_chunk] for i in g]
            self._prefill(state, np.asarray(chunk), [contexts[i] for i in chunk])

    def _prefill(self, state: CacheState, rows: np.ndarray, contexts: list[np.ndarray]) -> None:
        # Rows with the same context (several samples of one prompt: best-of-n, GRPO/RLOO groups)
        # are prefilled once and their cache rows copied: the prompt is the costly part of a rollout.
        slot: dict[bytes, int] = {}
        which = [slot.setdefault(c.tobytes(), len(slot)) for c in contexts]
        unique = [contexts[which.index(u)] for u in range(len(slot))]
        ids, mask = left_pad(unique, self.pad_token_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        out, cache = forward_with_cache(self.model, ids, None, attention_mask=mask,
                                        position_ids=positions(mask), output_hidden_states=True, logits_to_keep=1)
        logits, values = out.logits[:, -1].float(), self._head(out.hidden_states[-1][:, -1])
        if len(unique) < len(contexts):
            copy_of = torch.as_tensor(which, device=self.device)
            for layer in cache.layers:
                layer.keys, layer.values = layer.keys[copy_of], layer.values[copy_of]
            logits, values, mask = logits[copy_of], values[copy_of], mask[copy_of]
        rows_t = torch.as_tensor(rows, device=self.device)
        if np.array_equal(rows, np.arange(state.num_envs)):  # every row, in order: the cache as is
            state.cache, state.cache_mask = cache, mask.clone()
        elif state.cache is None:  # first prefill of only some rows: start from empty rows
            self._splice_into_empty(state, rows_t, cache, mask)
        else:
            self._splice(state, rows_t, cache, mask)
        _reserve(state.cache)
        if state.logits is None:
            state.logits = torch.zeros(state.num_envs, logits.shape[-1], device=self.device)
            state.values = torch.zeros(state.num_envs, device=self.device)
        state.logits[rows_t] = logits
        state.values[rows_t] = values
        state.next_pos[rows] = mask.sum(-1).cpu()

    def _splice_into_empty(self, state, rows_t, cache, mask) -> None:
        b, n = state.num_envs, mask.shape[1]
        layers = []
        for layer in cache.layers:
            k = layer.keys.new_zeros((b, *layer.keys.shape[1:]))
            v = layer.values.new_zeros((b, *layer.values.shape[1:]))
            k[rows_t], v[rows_t] = layer.keys, layer.values
            layers.append((k, v))
        from transformers import DynamicCache

        state.cache = DynamicCache(layers)
        state.cache_mask = torch.zeros(b, n, dtype=mask.dtype, device=mask.device)
        state.cache_mask[rows_t] = mask

    def _splice(self, state, rows_t, cache, mask) -> None:
        """Write freshly prefilled rows into the batch cache, right-aligned, padding the batch cache
        on the left when the new rows are longer than what it holds."""
        t, n = state.cache_mask.shape[1], mask.shape[1]
        if n > t:
            grow = n - t
            for layer in state.cache.layers:
                layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, grow, 0))
                layer.values = torch.nn.functional.pad(layer.values, (0, 0, grow, 0))
            state.cache_mask = torch.nn.functional.pad(state.cache_mask, (grow, 0))
            t = n
        for dst, src in zip(state.cache.layers, cache.layers, strict=True):
            dst.keys[rows_t] = 0
            dst.values[rows_t] = 0
            dst.keys[rows_t, :, t - n:] = src.keys
            dst.values[rows_t, :, t - n:] = src.values
        state.cache_mask[rows_t] = 0
        state.cache_mask[rows_t, t - n:] = mask

    def _decode(self, state: CacheState, rows: np.ndarray, tokens: np.ndarray) -> None:
        """Feed one token to ``rows``; other rows get a masked pad slot, which they never attend to."""
        b, device = state.num_envs, self.device
        every = len(rows) == b  # the common case: no scatter into, or gather out of, the batch
        if every:
            ids = torch.as_tensor(tokens, dtype=torch.long).view(b, 1)
            new = torch.ones(b, 1, dtype=state.cache_mask.dtype)
        else:
            ids = torch.full((b, 1), self.pad_token_id, dtype=torch.long)
            ids[rows, 0] = torch.as_tensor(tokens)
            new = torch.zeros(b, 1, dtype=state.cache_mask.dtype)
            new[rows] = 1
        ids, new = ids.to(device), new.to(device)
        state.cache_mask = torch.cat([state.cache_mask, new], dim=1)
        pos = state.next_pos.view(b, 1).to(device, copy=True)
        out, state.cache = forward_with_cache(self.model, ids, state.cache, attention_mask=state.cache_mask,
                                              position_ids=pos, output_hidden_states=True)
        if every:
            state.logits = out.logits[:, -1].float()
            state.values = self._head(out.hidden_states[-1][:, -1])
            state.next_pos += 1
            return
        rows_t = torch.as_tensor(rows, device=device)
        state.logits[rows_t] = out.logits[rows_t, -1].float()
        state.values[rows_t] = self._head(out.hidden_states[-1][rows_t, -1])
        state.next_pos[rows] += 1

    def _extend(self, state: CacheState, rows: np.ndarray, blocks: list[np.ndarray]) -> None:
        """Feed each of ``rows`` its block of new tokens in one forward over those rows' caches only
        (the blocks left-padded to the longest, masked slots nothing attends to, so every row's last
        new token sits in the last column); then the batch cache gains the block's columns, masked
        for the other rows, and is compacted when masked columns dominate (:func:`_compact`).
        Forwarding every row instead (pads for most) made an extension slower than re-prefilling."""
        from transformers import DynamicCache

        device = self.device
        ids, new = left_pad(blocks, self.pad_token_id)
        k = ids.shape[1]
        lengths = new.sum(1)
        # each block counts on from its row's next position; its padding repeats that position
        pos = state.next_pos[rows].view(-1, 1) + (torch.arange(k) - (k - lengths).view(-1, 1)).clamp(min=0)
        ids, new, pos = ids.to(device), new.to(device=device, dtype=state.cache_mask.dtype), pos.to(device)
        rows_t = torch.as_tensor(rows, device=device)
        sub = DynamicCache([(layer.keys[rows_t], layer.values[rows_t]) for layer in state.cache.layers])
        mask = torch.cat([state.cache_mask[rows_t], new], dim=1)
        out, sub = forward_with_cache(self.model, ids, sub, attention_mask=mask, position_ids=pos,
                                      output_hidden_states=True)
        t = state.cache_mask.shape[1]
        for layer, part in zip(state.cache.layers, sub.layers, strict=True):
            b, h, _, d = layer.keys.shape
            keys, values = layer.keys.new_zeros((b, h, t + k, d)), layer.values.new_zeros((b, h, t + k, d))
            keys[:, :, :t], values[:, :, :t] = layer.keys, layer.values
            keys[rows_t, :, t:], values[rows_t, :, t:] = part.keys[:, :, t:], part.values[:, :, t:]
            layer.keys, layer.values = keys, values
        grown = torch.zeros(state.num_envs, k, dtype=state.cache_mask.dtype, device=device)
        grown[rows_t] = new
        state.cache_mask = torch.cat([state.cache_mask, grown], dim=1)
        state.logits[rows_t] = out.logits[:, -1].float()
        state.values[rows_t] = self._head(out.hidden_states[-1][:, -1])
        state.next_pos[rows] += lengths
        _compact(state)

    @torch.inference_mode()
    def advance(self, obs: dict[str, np.ndarray], state: CacheState,
                active: np.ndarray | None = None) -> np.ndarray:
        """Bring ``state``'s cache up to ``obs`` (one decode step, or a prefill for rows whose
        episode is new) and leave the next-token logits and values in ``state.logits`` /
        ``state.values``. Rows where ``active`` is False are skipped. Returns each row's number of
        generated tokens.

        Runs under ``torch.inference_mode`` (cheaper per op than ``no_grad``, which matters when a
        step's forward is a few milliseconds): the cache and logits it leaves in ``state`` are
        inference tensors, read anywhere but updated only here."""
        ids = np.atleast_2d(obs["input_ids"])
        mask = np.atleast_2d(obs["attention_mask"])
        if ids.shape[0] != state.num_envs:
            raise ValueError(f"observation batch {ids.shape[0]} != rollout state's {state.num_envs} envs")
        p = state.prompt_len
        n_gen = mask[:, p:].sum(-1)
        # Whole-batch array ops, no loop over rows: a row steps when it holds this episode's prompt
        # and exactly one new token arrived; it is prefilled when its episode is new (or anything
        # else changed); it is left alone when nothing changed.
        live = np.ones(state.num_envs, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        same = state.known & (ids[:, :p] == state.prompt_ids).all(1) & (mask[:, :p] == state.prompt_mask).all(1)
        step = live & same & (n_gen == state.fed + 1)
        # several new tokens on a known episode: the turn a multi-turn env inserted after the agent's
        # EOS (textenv.turns); fed once through the cache, the conversation is never re-prefilled
        extend = live & same & (state.fed >= 0) & (n_gen > state.fed + 1)
        prefill = live & ~step & ~extend & ~(same & (n_gen == state.fed))
        if step.any():
            rows = np.flatnonzero(step)
            self._decode(state, rows, ids[rows, p + n_gen[rows] - 1])
        if extend.any():
            rows = np.flatnonzero(extend)
            self._extend(state, rows, [ids[i, p + state.fed[i]:p + n_gen[i]] for i in rows])
        if prefill.any():
            rows = np.flatnonzero(prefill)
            self._prefill_in_chunks(state, rows.tolist(), {i: ids[i][mask[i] == 1] for i in rows})
        touched = step | extend | prefill
        state.fed[touched] = n_gen[touched]
        state.prompt_ids[prefill] = ids[prefill, :p]  # a stepped row kept its prompt
        state.prompt_mask[prefill] = mask[prefill, :p]
        state.known |= prefill
        return n_gen
