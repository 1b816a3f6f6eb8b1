"""The agents on TextDialogue-v0: rollouts that record the env's inserted turns, learners that score
the agent's tokens only, SFT on whole conversations, the eval suite's conversation rows."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.kvcache import positions
from agents.policy import EpisodeBatch, LMActorCritic
from agents.ppo import PPOConfig, PPOTrainer
from agents.rollout import collect_rollout
from agents.sft import IGNORE, _sequences, conversation
from evals.generate import Decoding
from evals.suite import SuiteConfig, evaluate_suite
from textenv.turns import user_turn_ids

KW = dict(model="tiny", max_turn_tokens=6, max_new_tokens=80)


@pytest.fixture(scope="module")
def rollout():
    envs = gym.make_vec("TextDialogue-v0", num_envs=4, **KW)
    policy = LMActorCritic.from_pretrained("tiny", tokenizer=envs.unwrapped.setup.tokenizer)
    eos = envs.unwrapped.setup.eos_token_id
    # a bias towards EOS so that turns end both ways: by the agent's EOS and at max_turn_tokens
    def favour_eos(module, args, logits):
        logits[..., eos] += 4.0
        return logits

    policy.model.lm_head.register_forward_hook(favour_eos)
    record = collect_rollout(envs, policy, [0, 1, 2, 3], seed=0, generator=torch.Generator().manual_seed(0))
    return envs.unwrapped.setup, policy, record


def test_collect_records_the_inserted_turns_and_where_the_actions_are(rollout):
    setup, _, episodes = rollout
    for ep in episodes:
        turns = ep.info["turns"]
        assert len(ep.sequence) > len(ep.actions) and len(ep.positions) == len(ep.actions)
        assert [ep.sequence[q] for q in ep.positions] == ep.actions
        # between the agent's turns: the env's EOS (when the turn was cut) and the other side's next turn
        inserted = [t for q, t in enumerate(ep.sequence) if q not in set(ep.positions)]
        expected = []
        for k in range(len(turns) - 1):
            end = int(ep.info["turn_bounds"][k][1])  # after the turn's own tokens: its EOS, the agent's or the env's
            assert ep.sequence[end] == setup.eos_token_id
            expected += ([] if end in ep.positions else [setup.eos_token_id]) + user_turn_ids(setup, ep.index, k)
        assert inserted == expected
        assert ep.episode_return == pytest.approx(ep.info["return"])
    assert {len(ep.info["turns"]) for ep in episodes} != {1}
    ended = [int(b[1]) in ep.positions for ep in episodes for b in ep.info["turn_bounds"][:-1]]
    assert any(ended) and not all(ended)  # turns closed by the agent's EOS and by max_turn_tokens both seen


def test_the_learners_score_the_actions_as_the_rollout_did(rollout):
    """A full forward over prompt + conversation, read at the action columns, gives the rollout's
    log-probs and values: the cache took the inserted turns exactly as a forward over them does."""
    _, policy, episodes = rollout
    batch = episodes.batch
    assert batch.mask.shape[1] == max(len(e.actions) for e in episodes)
    with torch.no_grad():
        scores = policy.evaluate(batch)
        ref = policy.reference_logprobs(batch, policy.model)
    for i, ep in enumerate(episodes):
        n = len(ep.actions)
        assert scores.mask[i].sum() == n
        np.testing.assert_allclose(scores.logprobs[i, :n].numpy(), ep.logprobs, atol=2e-5)
        np.testing.assert_allclose(scores.values[i, :n].numpy(), ep.values, atol=2e-5)
        np.testing.assert_allclose(ref[i, :n].numpy(), ep.logprobs, atol=2e-5)
        assert not scores.logprobs[i, n:].any()
    sub = batch.rows(torch.tensor([2, 0]))
    assert torch.equal(sub.action_index, batch.action_index[[2, 0]]) and sub.gen_len == batch.gen_len


def test_the_lm_head_runs_at_the_actions_only(rollout):
    """Multi-turn scoring applies the LM head to the batch's real actions only (not to the inserted
    turns or the padding), and gives what a full forward read at the action columns gives; the
    entropy outside autograd changes no gradient."""
    from agents.policy import entropy_from_logprobs, logprobs_from_logits

    _, policy, episodes = rollout
    batch = episodes.batch
    rows = []
    hook = policy.model.lm_head.register_forward_hook(lambda m, args, out: rows.append(args[0][..., 0].numel()))
    try:
        with torch.no_grad():
            scores = policy.evaluate(batch)
    finally:
        hook.remove()
    n_actions = sum(len(ep.actions) for ep in episodes)
    assert max(rows) == n_actions < batch.input_ids.shape[0] * batch.gen_len
    with torch.no_grad():
        logits = policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              position_ids=positions(batch.attention_mask)).logits
    g = batch.gen_len
    dense = entropy_from_logprobs(logprobs_from_logits(logits[:, -g - 1:-1], policy.sampling))
    for i, ep in enumerate(episodes):
        np.testing.assert_allclose(scores.entropy[i, :len(ep.actions)].numpy(),
                                   dense[i, ep.positions].numpy(), rtol=1e-5, atol=1e-5)
    grads = []
    for entropy_grad in (True, False):
        policy.model.zero_grad(set_to_none=True)
        out = policy.evaluate(batch, entropy_grad=entropy_grad)
        assert out.entropy.requires_grad == entropy_grad
        (out.logprobs.sum() - 0.0 * out.entropy.sum()).backward()
        grads.append(policy.model.lm_head.weight.grad.clone())
    assert torch.equal(*grads)


def test_a_batch_refuses_actions_outside_the_generated_tokens():
    with pytest.raises(ValueError, match="outside its 2 generated tokens"):
        EpisodeBatch.from_episodes([[1, 2]], [[3, 4]], 0, positions=[[0, 2]])


def test_ppo_trains_on_dialogue(tmp_path):
    cfg = PPOConfig(env="TextDialogue-v0", model="tiny", iterations=1, prompts_per_iter=4, epochs=1,
                    minibatch_size=2, lr=1e-3, tensorboard=False, progress=False, checkpoint_every=1,
                    runs=str(tmp_path), max_new_tokens=120)
    trainer = PPOTrainer(cfg)
    before = trainer.policy.model.lm_head.weight.clone()
    metrics = trainer.step()
    for key in ("losses/policy_loss", "losses/value_loss", "objective/kl", "charts/reward_mean",
                "rewards/relevance/mean"):
        assert math.isfinite(metrics[key]), key
    assert metrics["charts/episode_length"] <= 3 * 40  # the agent's tokens only, never the inserted turns
    assert not torch.equal(before, trainer.policy.model.lm_head.weight)


def test_per_turn_credit_gives_the_learner_each_turns_reward_where_the_turn_ended(tmp_path, monkeypatch):
    """``credit="turn"``: GAE gets the env's rewards at the actions they came with (each turn's
    reward at the action that ended it), scaled as the returns are; a group baseline refuses it."""
    import agents.advantages as advantages
    import agents.ppo as ppo

    seen, rollouts = {}, []
    monkeypatch.setattr(ppo, "update_batch", lambda *a, **kw: seen.update(kw) or advantages.update_batch(*a, **kw))
    original = PPOTrainer.collect
    monkeypatch.setattr(PPOTrainer, "collect", lambda self, it: rollouts.append(original(self, it)) or rollouts[-1])
    cfg = PPOConfig(env="TextDialogue-v0", model="tiny", iterations=1, prompts_per_iter=4, epochs=1,
                    minibatch_size=2, lr=1e-3, tensorboard=False, progress=False, checkpoint_every=1,
                    runs=str(tmp_path), max_new_tokens=120, credit="turn", reward_scale=2.0)
    PPOTrainer(cfg).step()
    record = rollouts[0][0]
    placed = seen["action_rewards"].cpu()
    torch.testing.assert_close(placed, 2.0 * record.rewards)
    for i, ep in enumerate(record):  # a reward only where a turn ended: one per turn the episode had
        assert (placed[i] != 0).sum() <= len(ep.info["turns"]) and placed[i].sum() == pytest.approx(
            2.0 * ep.info["return"])
    assert sum(len(ep.info["turns"]) > 1 for ep in record) >= 1  # some episode had several turns to credit
    with pytest.raises(ValueError, match="credit='turn' needs advantage='gae'"):
        PPOConfig(env="TextDialogue-v0", model="tiny", credit="turn", advantage="rloo", samples_per_prompt=2)


def test_sft_learns_whole_conversations_laid_out_as_the_env_does():
    setup = gym.make("TextDialogue-v0", model="tiny", max_turn_tokens=40).unwrapped.setup
    ids, labels = conversation(setup, 0)
    replies = setup.examples[0].metadata["replies"]
    env = gym.make("TextDialogue-v0", model="tiny", max_turn_tokens=40).unwrapped
    env.reset(options={"index": 0})
    for reply in replies:  # type the real replies: the env writes what conversation() built
        for t in setup.tokenizer(reply, add_special_tokens=False)["input_ids"][:39]:
            env.step(t)
        *_, info = env.step(setup.eos_token_id)
    gen = env._generated  # the observation's tokens after the prompt (the last EOS is not written)
    assert ids[:len(gen)] == gen and ids[len(gen):] == [setup.eos_token_id]
    users = [t for k in range(len(replies) - 1) for t in user_turn_ids(setup, 0, k)]
    assert [t for t, y in zip(ids, labels, strict=True) if y == IGNORE] == users
    assert len(info["turns"]) == len(replies)
    seqs = _sequences(setup, "sft", 4096, limit=2)
    prompt = setup.encode(0).ids.tolist()
    assert seqs[0][0] == prompt + ids and seqs[0][1] == [IGNORE] * len(prompt) + labels


def test_the_suite_reports_conversations():
    cfg = SuiteConfig(envs=("TextDialogue-v0",), model="tiny", policies=("base=tiny", "random", "reference"),
                      limit=3, decoding=Decoding(temperature=0.7, max_new_tokens=80, batch_size=4), n_boot=50,
                      progress=False, metrics=None)
    df = evaluate_suite(cfg)
    table = df.set_index(["policy", "metric"]).value
    assert {"base", "random", "reference"} <= set(df.policy)
    assert table["base", "kl_to_ref"] == 0.0 and ("base", "ref_perplexity") not in table
    # the real replies, typed into the env, are more relevant to the user's turns than random tokens
    assert table["reference", "reward"] > table["random", "reward"]


def test_reward_model_samples_are_first_turns(monkeypatch):
    """A reward model scores one turn in its context: its sampled pairs are first turns (the env
    made with turns=1 and one turn's budget), under the first turn's prompt."""
    from agents import preferences

    made = []
    make_vec = gym.make_vec
    monkeypatch.setattr(gym, "make_vec", lambda *a, **kw: made.append(kw) or make_vec(*a, **kw))
    env = gym.make("TextDialogue-v0", model="tiny", turns=1).unwrapped
    pairs = preferences.sample_pairs("TextDialogue-v0", "train", "tiny", env.tokenizer, prompts=4, samples=2,
                                     margin=0.0)
    assert [(kw["turns"], kw["max_new_tokens"]) for kw in made] == [(1, env.setup.task.max_turn_tokens)]
    firsts = {env.setup.prompt_text(ex) for ex in env.setup.examples}
    assert pairs and all(p.prompt in firsts for p in pairs)
