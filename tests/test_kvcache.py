"""agents.kvcache, one test per cache operation: after each, every row's next-token logits equal a
full forward over that row's whole observation (the cache changes the cost, never the result)."""

import contextlib

import numpy as np
import pytest
import torch

from agents import kvcache
from agents.kvcache import RESERVE_COLUMNS, CachedLM, CacheState, left_pad, score_forward
from textenv.models import load_model, tiny_tokenizer

P, G = 8, 6  # prompt slots, generated slots of the observation


@pytest.fixture(scope="module")
def lm():
    tok = tiny_tokenizer()
    _, model = load_model("tiny", tokenizer=tok)
    return CachedLM(model.eval(), pad_token_id=int(tok.pad_token_id or tok.eos_token_id))


def _obs(rows, g=G):
    """The env's layout: each prompt left-padded into the first P slots, generated tokens after it."""
    ids = np.zeros((len(rows), P + g), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, (prompt, gen) in enumerate(rows):
        ids[i, P - len(prompt):P], mask[i, P - len(prompt):P] = prompt, 1
        ids[i, P:P + len(gen)], mask[i, P:P + len(gen)] = gen, 1
    return {"input_ids": ids, "attention_mask": mask}


def _full(lm, rows):
    """Next-token logits of each row from one uncached forward over its real tokens only."""
    out = []
    for prompt, gen in rows:
        ids = torch.tensor([list(prompt) + list(gen)])
        logits, _ = score_forward(lm.model, ids, torch.ones_like(ids), 1)
        out.append(logits[0, -1])
    return torch.stack(out)


def _check(lm, state, rows, which=None):
    which = range(len(rows)) if which is None else which
    want = _full(lm, [rows[i] for i in which])
    torch.testing.assert_close(state.logits[list(which)], want, atol=1e-5, rtol=0)


@torch.no_grad()
def test_prefill_of_prompts_of_different_lengths(lm):
    rows = [([5, 6, 7], []), ([9] * 8, []), ([11, 12], []), ([5, 6, 7], [])]
    state = CacheState(4, P)
    n_gen = lm.advance(_obs(rows), state)
    assert n_gen.tolist() == [0, 0, 0, 0] and state.known.all() and state.fed.tolist() == [0, 0, 0, 0]
    _check(lm, state, rows)


@torch.no_grad()
def test_decode_feeds_one_token_per_row(lm):
    rows = [([5, 6, 7], []), ([11, 12], [])]
    state = CacheState(2, P)
    lm.advance(_obs(rows), state)
    width = state.cache_mask.shape[1]
    for t in range(3):
        rows = [(p, g + [20 + t + i]) for i, (p, g) in enumerate(rows)]
        lm.advance(_obs(rows), state)
        _check(lm, state, rows)
    assert state.cache_mask.shape[1] == width + 3  # three decode steps, no re-prefill


@torch.no_grad()
def test_decode_writes_into_reserved_columns_and_grows_when_they_run_out(lm, monkeypatch):
    monkeypatch.setattr(kvcache, "RESERVE_MIN_BYTES", 0)  # reserve even this small a cache
    rows = [([5, 6, 7], []), ([11, 12], [])]
    state = CacheState(2, P)
    lm.advance(_obs(rows, RESERVE_COLUMNS + 2), state)
    storages = []
    for t in range(RESERVE_COLUMNS + 2):
        rows = [(p, g + [20 + (t + i) % 50]) for i, (p, g) in enumerate(rows)]
        lm.advance(_obs(rows, RESERVE_COLUMNS + 2), state)
        storages.append(state.cache.layers[0].keys.untyped_storage().data_ptr())
        assert state.cache.layers[0].keys.shape[-2] == state.cache_mask.shape[1]
    _check(lm, state, rows)
    # the first decode step moves the prefilled cache into a buffer with spare columns; the next
    # RESERVE_COLUMNS steps write into it in place; then it grows once
    assert len(set(storages[:RESERVE_COLUMNS + 1])) == 1 and storages[-1] != storages[0]
    monkeypatch.setattr(kvcache, "RESERVE_MIN_BYTES", 1 << 40)  # a small cache keeps concatenating
    state = CacheState(2, P)
    lm.advance(_obs([(p, []) for p, _ in rows], RESERVE_COLUMNS + 2), state)
    lm.advance(_obs([(p, g[:1]) for p, g in rows], RESERVE_COLUMNS + 2), state)
    assert type(state.cache.layers[0]).__name__ == "DynamicLayer"


@torch.no_grad()
def test_splice_a_restarted_longer_episode_into_a_running_batch(lm):
    rows = [([5, 6], [7]), ([11, 12], [13])]
    state = CacheState(2, P)
    lm.advance(_obs([(p, []) for p, _ in rows]), state)
    lm.advance(_obs(rows), state)
    rows = [([30, 31, 32, 33, 34, 35, 36], []), (rows[1][0], rows[1][1] + [14])]  # row 0 autoreset, longer
    lm.advance(_obs(rows), state)
    _check(lm, state, rows)
    rows = [(rows[0][0], [40]), (rows[1][0], rows[1][1] + [15])]  # both keep decoding after the splice
    lm.advance(_obs(rows), state)
    _check(lm, state, rows)


@torch.no_grad()
@pytest.mark.parametrize("reserve", [False, True])
def test_inserted_turns_extend_the_cache_in_one_forward(lm, monkeypatch, reserve):
    """A multi-turn env writes the other side's turn after the agent's EOS: several new tokens on a
    known episode. They go through the cache in one forward (blocks of different lengths, a row with
    one token and a finished row beside them), and decoding goes on from there, equal to full forwards."""
    if reserve:
        monkeypatch.setattr(kvcache, "RESERVE_MIN_BYTES", 0)
    g = 24
    rows = [([5, 6, 7], [20, 21]), ([11, 12], [22]), ([9, 9, 9, 9], [23, 24]), ([13], [25])]
    state = CacheState(4, P)
    lm.advance(_obs([(p, []) for p, _ in rows], g), state)
    lm.advance(_obs([(p, gen[:1]) for p, gen in rows], g), state)
    lm.advance(_obs(rows, g), state, active=np.array([True, False, True, True]))  # row 1 waits
    calls = []
    original = lm._prefill
    monkeypatch.setattr(lm, "_prefill", lambda *a, **k: calls.append(a) or original(*a, **k))
    width = state.cache_mask.shape[1]
    rows = [(rows[0][0], rows[0][1] + [2, 30, 31, 32, 33, 34]),  # EOS + a 5-token inserted turn
            (rows[1][0], rows[1][1] + [2, 40]),  # a shorter one
            rows[2],  # finished: not fed
            (rows[3][0], rows[3][1] + [26])]  # a plain decode step in the same advance
    n_gen = lm.advance(_obs(rows, g), state, active=np.array([True, True, False, True]))
    assert not calls and n_gen.tolist() == [8, 3, 2, 2] and state.fed.tolist() == [8, 3, 2, 2]
    _check(lm, state, rows, which=[0, 1, 3])
    assert state.cache_mask.shape[1] <= width + 1 + 6  # one decode column, one block of the longest turn
    for t in range(3):  # the agent's next turn decodes on top of the extended cache
        rows = [(p, gen + [50 + t + i]) for i, (p, gen) in enumerate(rows)]
        lm.advance(_obs(rows, g), state)
        _check(lm, state, rows)
    assert not calls


@torch.no_grad()
def test_extensions_on_different_steps_keep_the_cache_compact(lm):
    """Rows whose turns end on different steps each append a block to every row; the masked columns
    are dropped once they dominate, and every row still equals its full forward."""
    g = 40
    rows = [([5, 6, 7], [20]), ([11, 12], [21]), ([9, 9, 9, 9], [22])]
    state = CacheState(3, P)
    lm.advance(_obs([(p, []) for p, _ in rows], g), state)
    lm.advance(_obs(rows, g), state)
    for r in range(3):  # row r's turn ends: EOS and an 8-token turn; the others decode one token
        rows = [(p, gen + ([2, *range(30, 38)] if i == r else [40 + r])) for i, (p, gen) in enumerate(rows)]
        lm.advance(_obs(rows, g), state)
        _check(lm, state, rows)
    real = state.cache_mask.sum(1)
    assert state.cache_mask.shape[1] == int(real.max())  # no column is masked in every row
    assert real.tolist() == [len(p) + len(gen) for p, gen in rows]  # every token of each row, once
    rows = [(p, gen + [60]) for p, gen in rows]
    lm.advance(_obs(rows, g), state)
    _check(lm, state, rows)


@torch.no_grad()
def test_finished_rows_are_skipped_and_invalidate_forces_a_prefill(lm):
    rows = [([5, 6, 7], []), ([11, 12], [])]
    state = CacheState(2, P)
    lm.advance(_obs(rows), state)
    before = state.logits[1].clone()
    rows = [(rows[0][0], [8]), (rows[1][0], [13])]
    lm.advance(_obs(rows), state, active=np.array([True, False]))  # row 1 finished: not fed
    assert state.fed.tolist() == [1, 0] and torch.equal(state.logits[1], before)
    _check(lm, state, rows, which=[0])
    state.invalidate()
    assert not state.known.any()
    lm.advance(_obs(rows), state)  # both rows prefilled from scratch, row 1 with its new token
    _check(lm, state, rows)


@torch.no_grad()
def test_a_head_scores_the_last_hidden_state(lm):
    head = torch.nn.Linear(lm.model.config.n_embd, 1)
    cached = CachedLM(lm.model, lm.pad_token_id, head=lambda h: head(h.float()).squeeze(-1))
    rows = [([5, 6, 7], []), ([11, 12], [])]
    state = CacheState(2, P)
    cached.advance(_obs(rows), state)
    for i, (prompt, gen) in enumerate(rows):
        ids = torch.tensor([prompt + gen])
        _, hidden = score_forward(lm.model, ids, torch.ones_like(ids), 1)
        torch.testing.assert_close(state.values[i], head(hidden[0, -1]).squeeze(-1), atol=1e-5, rtol=0)


def test_left_pad_puts_each_rows_last_token_in_the_last_column():
    ids, mask = left_pad([[5, 6, 7], [8], np.array([9, 10])], pad_token_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert ids.dtype == torch.long


@contextlib.contextmanager
def _counted_cached_forwards():
    import agents.kvcache as kvcache

    calls, real = [], kvcache.forward_with_cache

    def counted(model, ids, *a, **k):
        calls.append(ids.shape)
        return real(model, ids, *a, **k)

    kvcache.forward_with_cache = counted
    try:
        yield calls
    finally:
        kvcache.forward_with_cache = real


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("keep", [G + 1, 3])
def test_scoring_shares_a_repeated_prompt_and_gives_the_plain_forwards_values_and_gradients(lm, keep):
    """Rows that repeat a prompt (a GRPO group) are scored on one prompt forward: same logits, same
    last hidden states, same parameter gradients as the forward over every row, padding included."""
    rows = [([5, 6, 7], [8, 9, 10, 11]), ([5, 6, 7], [12]), ([3, 4, 5, 6, 7, 8], [9, 10]), ([5, 6, 7], [8, 9, 13])]
    obs = _obs(rows)
    ids, mask = torch.as_tensor(obs["input_ids"]), torch.as_tensor(obs["attention_mask"])
    model = lm.model
    plain_logits, plain_hidden = score_forward(model, ids, mask, keep)
    with _counted_cached_forwards() as calls:
        shared_logits, shared_hidden = score_forward(model, ids, mask, keep, prompt_len=P)
    assert len(calls) == 2  # the distinct prompts once, then every row's generated tokens
    assert shared_hidden.shape[1] == G + 1  # the prompt's last position and the generated ones
    real = mask[:, -keep:].bool()  # where a row has a token (padded slots differ and are never read)
    torch.testing.assert_close(shared_logits[real], plain_logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(shared_hidden[:, -G - 1:][mask[:, P - 1:].bool()],
                               plain_hidden[:, -G - 1:][mask[:, P - 1:].bool()], atol=1e-5, rtol=0)

    def loss(logits):  # a loss over the real positions only, as PPO's is
        return (logits.log_softmax(-1).amax(-1) * real).sum()

    want = _grads(model, loss(score_forward(model, ids, mask, keep)[0]))
    got = _grads(model, loss(score_forward(model, ids, mask, keep, prompt_len=P)[0]))
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-4, msg=name)
    model.zero_grad(set_to_none=True)


def test_a_shared_prompt_spreads_to_its_rows_without_accumulating_indexing(lm):
    """GRPO/RLOO updates must be reproducible: a group's prompt reaches its rows by ``index_select``,
    whose CPU backward sums the rows' gradients in a fixed order. ``x[inverse]`` (``IndexBackward0``,
    index_put_ with accumulate) summed them in a thread-dependent order: the same update differed
    at 1e-9 run to run, and 12 iterations turned that into a different leaderboard row."""
    rows = [([5, 6, 7], [8, 9, 10, 11]), ([5, 6, 7], [12]), ([3, 4, 5, 6, 7, 8], [9, 10]), ([5, 6, 7], [8, 9, 13])]
    obs = _obs(rows)
    ids, mask = torch.as_tensor(obs["input_ids"]), torch.as_tensor(obs["attention_mask"])
    logits, _ = score_forward(lm.model, ids, mask, G + 1, prompt_len=P)
    seen, todo = set(), [logits.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        todo += [f for f, _ in fn.next_functions]
    names = {type(fn).__name__ for fn in seen}
    assert "IndexSelectBackward0" in names and "IndexBackward0" not in names, sorted(names)
    first = _grads(lm.model, logits.log_softmax(-1).amax(-1).sum())
    again = _grads(lm.model, score_forward(lm.model, ids, mask, G + 1, prompt_len=P)[0].log_softmax(-1).amax(-1).sum())
    assert all(torch.equal(first[n], again[n]) for n in first)
    lm.model.zero_grad(set_to_none=True)


def test_scoring_takes_the_plain_forward_for_distinct_prompts_and_under_activation_checkpointing():
    tok = tiny_tokenizer()
    _, model = load_model("tiny", tokenizer=tok)
    distinct = _obs([([5, 6, 7], [8, 9]), ([3, 4], [10])])
    repeated = _obs([([5, 6, 7], [8, 9]), ([5, 6, 7], [10])])
    for obs, checkpointing in ((distinct, False), (repeated, True)):
        if checkpointing:
            model.gradient_checkpointing_enable()
            model.train()
        ids, mask = torch.as_tensor(obs["input_ids"]), torch.as_tensor(obs["attention_mask"])
        with _counted_cached_forwards() as calls:
            logits, _ = score_forward(model, ids, mask, G + 1, prompt_len=P)
        assert not calls and logits.shape[1] == G + 1  # nothing to share / the cache is off: plain forward
