"""The rollout record: the tensors PPO reads are the ones the per-episode path would build, one
padding function pads every token batch, and a multi-turn rollout checks its actions' places."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.kvcache import pad
from agents.policy import EpisodeBatch, LMActorCritic
from agents.rollout import Episode, Rollout, _generated, collect_rollout


def test_pad_left_right_and_a_minimum_width():
    ids, mask = pad([[5, 6, 7], [8], np.array([9, 10])], 0, "left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]] and mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    ids, mask = pad([[5, 6], []], -100, "right", width=3)
    assert ids.tolist() == [[5, 6, -100], [-100, -100, -100]] and mask.tolist() == [[1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="side"):
        pad([[1]], 0, "middle")


@pytest.mark.parametrize("env_id, kw", [("TextCount-v0", dict(max_new_tokens=6)),
                                        ("TextDialogue-v0", dict(max_turn_tokens=4, max_new_tokens=40))])
def test_the_record_is_what_the_episodes_would_batch_to(env_id, kw):
    envs = gym.make_vec(env_id, num_envs=3, model="tiny", autoreset_mode="same_step", **kw)
    policy = LMActorCritic.from_pretrained("tiny", tokenizer=envs.unwrapped.setup.tokenizer)
    parts = [collect_rollout(envs, policy, idx, seed=s, generator=torch.Generator().manual_seed(s))
             for idx, s in (([0, 2, 2], 1), ([5], 2))]
    for r in [*parts, Rollout.cat(parts, policy.pad_token_id)]:
        episodes = list(r)
        assert all(isinstance(e, Episode) for e in episodes) and r[-1].index == episodes[-1].index
        old = EpisodeBatch.from_episodes([e.prompt_ids.tolist() for e in episodes], [e.sequence for e in episodes],
                                         policy.pad_token_id, [e.positions for e in episodes])
        for name in ("input_ids", "attention_mask", "action_index", "action_mask"):
            a, b = getattr(r.batch, name), getattr(old, name)
            assert a.dtype == b.dtype and torch.equal(a, b), name
        assert r.batch.gen_len == old.gen_len and r.lengths.tolist() == [len(e.actions) for e in episodes]
        for i, e in enumerate(episodes):
            n = len(e.actions)
            assert r.logprobs[i, :n].tolist() == e.logprobs and r.values[i, :n].tolist() == e.values
            assert not r.logprobs[i, n:].any() and not r.values[i, n:].any()
        assert r.returns.tolist() == [e.episode_return for e in episodes]
        assert r.ended_with_eos.tolist() == [bool(e.info.get("ended_with_eos")) for e in episodes]
        if env_id == "TextCount-v0":  # one turn: the actions are the generated tokens, in order
            assert all(e.sequence == e.actions and e.positions == list(range(len(e.actions))) for e in episodes)


def test_an_action_the_observation_does_not_hold_is_refused():
    seq = np.array([[7, 8, 9, 0]])
    mask = np.array([[1, 1, 1, 0]])
    live = np.array([[True, True]])
    ids, gen_mask = _generated(seq, mask, live, np.array([[7, 2]]), np.array([[0, 3]]), [4])
    assert ids.tolist() == [[7, 8, 9, 2]] and gen_mask.tolist() == [[True] * 4]  # an EOS the env did not write
    with pytest.raises(RuntimeError, match="example 4"):
        _generated(seq, mask, live, np.array([[7, 2]]), np.array([[0, 1]]), [4])
