"""The KV-cached policy: rollout log-probs/values equal a full-sequence forward; sampling maths."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats

from agents.policy import EpisodeBatch, LMActorCritic, Sampling, logprobs_from_logits, row_uniforms, sample
from agents.rollout import collect, collect_rollout


def _policy(envs, sampling=None):
    sampling = sampling or Sampling()
    policy = LMActorCritic.from_pretrained("tiny", tokenizer=envs.unwrapped.tokenizer, sampling=sampling)
    torch.nn.init.normal_(policy.value_head.weight, std=0.1)  # non-trivial values to compare
    return policy


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
@pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.7, top_k=50, top_p=0.9)])
def test_cached_rollout_logprobs_equal_a_full_forward(mode, sampling):
    envs = gym.make_vec("TextCount-v0", num_envs=4, model="tiny", autoreset_mode=mode, max_new_tokens=12)
    policy = _policy(envs, sampling)
    gen = torch.Generator().manual_seed(0)
    record = collect_rollout(envs, policy, indices=[0, 1, 2, 2], seed=0, generator=gen)
    episodes = list(record)
    assert [e.index for e in episodes] == [0, 1, 2, 2]
    assert all(1 <= len(e.actions) <= 12 for e in episodes)
    assert all(e.info["num_tokens"] == len(e.actions) - e.info["ended_with_eos"] for e in episodes)
    batch = record.batch
    assert batch.action_index.tolist() == [list(range(batch.action_index.shape[1]))] * 4  # one turn: columns 0..
    heads = []  # the LM head runs at the real actions only, not at a shorter episode's padding
    hook = policy.model.lm_head.register_forward_hook(lambda m, args, out: heads.append(args[0].shape[0]))
    with torch.no_grad():
        scores = policy.evaluate(batch)
    hook.remove()
    assert heads == [sum(len(e.actions) for e in episodes)]
    for i, e in enumerate(episodes):
        n = len(e.actions)
        torch.testing.assert_close(scores.logprobs[i, :n], torch.tensor(e.logprobs), atol=1e-5, rtol=0)
        torch.testing.assert_close(scores.values[i, :n], torch.tensor(e.values), atol=1e-5, rtol=0)
        assert scores.mask[i, :n].all() and not scores.mask[i, n:].any()


def test_cache_survives_staggered_resets_in_a_long_rollout():
    """Sub-envs restart at different steps (autoreset); the re-prefilled rows must still match."""
    envs = gym.make_vec("TextSentiment-v0", num_envs=3, model="tiny", autoreset_mode="same_step",
                        max_new_tokens=6)
    policy = _policy(envs)
    env = envs.unwrapped
    obs, _ = envs.reset(seed=1)
    state = policy.cache_state(3, env.setup.max_prompt_tokens)
    gen = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        before = {k: v.copy() for k, v in obs.items()}
        res = policy.act(obs, state, generator=gen)
        actions = res.actions.copy()
        actions[rng.random(3) < 0.2] = env.setup.eos_token_id  # stagger the episode ends
        # check every row's cached logits against a fresh full forward on its context
        for i in range(3):
            ctx = before["input_ids"][i][before["attention_mask"][i] == 1]
            with torch.no_grad():
                logits = policy.model(input_ids=torch.as_tensor(ctx)[None]).logits[0, -1]
            full = logprobs_from_logits(logits, policy.sampling)[res.actions[i]]
            assert abs(float(full) - float(res.logprobs[i])) < 1e-5
        obs, *_ = envs.step(actions)


def test_top_k_top_p_mask_and_renormalise():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    lp = logprobs_from_logits(logits, Sampling(top_k=2))
    assert torch.isinf(lp[0, 2:]).all() and torch.allclose(lp[0, :2].exp().sum(), torch.tensor(1.0))
    probs = torch.softmax(logits, -1)[0]  # [0.61, 0.22, 0.14, 0.03]
    lp = logprobs_from_logits(logits, Sampling(top_p=0.7))
    kept = (~torch.isinf(lp[0])).sum().item()
    assert kept == 2 and probs[0] < 0.7 <= probs[:2].sum()
    lp = logprobs_from_logits(logits, Sampling(temperature=0.5))
    torch.testing.assert_close(lp, torch.log_softmax(logits / 0.5, -1))


def test_sample_follows_the_distribution():
    """Inverse-CDF draws from hashed uniforms: frequencies match the probabilities (chi-square), a
    zero-mass token is never drawn, and a row of the batch is drawn from its own row."""
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.15, 0.05], [0.0, 0.0, 0.0, 0.0, 1.0]])
    n = 20_000
    u = torch.from_numpy(row_uniforms(np.arange(n), np.full(n, 7)))
    first = sample(probs[[0]].expand(n, -1), u)
    counts = np.bincount(first.numpy(), minlength=5)
    assert counts[1] == 0
    keep = [0, 2, 3, 4]
    assert stats.chisquare(counts[keep], probs[0, keep].numpy() * n).pvalue > 1e-3
    assert (sample(probs[[1]].expand(n, -1), u) == 4).all()
    # a wrong sampler fails the same check: the draws of a uniform over the four tokens
    flat = np.bincount((u.numpy() * 4).astype(int), minlength=4)
    assert stats.chisquare(flat, probs[0, keep].numpy() * n).pvalue < 1e-6


@pytest.mark.parametrize("cdf_dtype", [None, torch.float32])  # float32: the path MPS takes
def test_sample_edges_never_leave_the_support(cdf_dtype):
    """u = 0 takes the first token of positive mass; u just below (or at) 1 the last, even when the
    product rounds up to the total; unnormalised rows work."""
    probs = torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0]] * 4)
    picked = sample(probs, torch.tensor([0.0, 0.5, 1 - 2**-53, 1.0], dtype=torch.float64), cdf_dtype)
    assert picked.tolist() == [1, 1, 3, 3]
    logits = torch.randn(3, 50_000, generator=torch.Generator().manual_seed(0)) * 4
    masked = logprobs_from_logits(logits, Sampling(top_k=3)).exp()
    for u in (0.0, 1e-12, 0.999999, 1 - 2**-24, 1 - 2**-53):
        rows = sample(masked, torch.full((3,), u, dtype=torch.float64), cdf_dtype)
        assert (masked.gather(1, rows[:, None]) > 0).all()


def test_row_uniforms_are_a_function_of_seed_and_position_only():
    seeds, positions = np.array([3, 11, 5, 3]), np.array([0, 4, 4, 1])
    u = row_uniforms(seeds, positions)
    assert u[0] != u[3] and len(set(u)) == 4  # same seed, next token: a new draw
    assert u[1] == row_uniforms([11], [4])[0]  # the batch around a row changes nothing
    assert (row_uniforms(seeds[::-1], positions[::-1]) == u[::-1]).all()
    big = row_uniforms(np.arange(50_000) * 64, np.zeros(50_000))  # eval seeds are 64 apart
    assert 0 <= big.min() and big.max() < 1 and stats.kstest(big, "uniform").pvalue > 1e-3


def test_row_seeded_samples_do_not_depend_on_the_batch():
    """The eval suite shards examples across processes: a row's completion must be the same
    whether it is sampled alone or beside other rows."""
    envs = gym.make_vec("TextCount-v0", num_envs=3, model="tiny", autoreset_mode="same_step", max_new_tokens=8)
    policy = _policy(envs)
    together = collect(envs, policy, indices=[4, 1, 6], seed=0, row_seeds=[40, 10, 60])
    alone_envs = gym.make_vec("TextCount-v0", num_envs=1, model="tiny", autoreset_mode="same_step", max_new_tokens=8)
    alone = collect(alone_envs, policy, indices=[1], seed=0, row_seeds=[10])
    assert together[1].actions == alone[0].actions
    other = collect(alone_envs, policy, indices=[1], seed=0, row_seeds=[11])
    assert other[0].actions != alone[0].actions  # the seed does steer the sample


def test_save_and_load_round_trip(tmp_path):
    envs = gym.make_vec("TextCount-v0", num_envs=2, model="tiny")
    policy = _policy(envs, Sampling(temperature=0.8))
    policy.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.bin")) and (tmp_path / "value_head.safetensors").exists()
    loaded = LMActorCritic.from_pretrained(str(tmp_path))
    assert loaded.sampling == policy.sampling
    batch = EpisodeBatch.from_episodes([[5, 6, 7]], [[8, 9]], policy.pad_token_id)
    with torch.no_grad():
        a, b = policy.evaluate(batch), loaded.evaluate(batch)
    torch.testing.assert_close(a.logprobs, b.logprobs)
    torch.testing.assert_close(a.values, b.values)


def test_lora_reference_is_the_base_with_the_adapter_off():
    envs = gym.make_vec("TextCount-v0", num_envs=2, model="tiny")
    tok = envs.unwrapped.tokenizer
    policy = LMActorCritic.from_pretrained("tiny", tokenizer=tok, lora={"r": 4, "target_modules": ["c_attn"]})
    _, base = __import__("textenv.models", fromlist=["load_model"]).load_model("tiny", tokenizer=tok)
    batch = EpisodeBatch.from_episodes([[5, 6, 7]], [[8, 9]], policy.pad_token_id)
    ref = policy.reference_logprobs(batch)
    full = LMActorCritic(base, tok).reference_logprobs(batch, reference=base)
    torch.testing.assert_close(ref, full)
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)


def test_samples_of_one_prompt_are_prefilled_once():
    """Best-of-n and GRPO groups repeat a prompt across sub-envs: one prefill row per distinct prompt,
    and every copy still scores like a full forward."""
    envs = gym.make_vec("TextCount-v0", num_envs=4, model="tiny", autoreset_mode="same_step", max_new_tokens=6)
    policy = _policy(envs)
    batch_rows = []
    hook = policy.model.register_forward_pre_hook(lambda m, args, kw: batch_rows.append(kw["input_ids"].shape),
                                                  with_kwargs=True)
    record = collect_rollout(envs, policy, indices=[5, 5, 5, 7], seed=0, generator=torch.Generator().manual_seed(0))
    episodes = list(record)
    hook.remove()
    assert batch_rows[0][0] == 2  # the prefill: prompts 5 and 7
    assert all(shape == (4, 1) for shape in batch_rows[1:])  # then one token per sub-env per step
    assert len({tuple(e.actions) for e in episodes[:3]}) > 1  # the copies sample independently
    with torch.no_grad():
        scores = policy.evaluate(record.batch)
    for i, e in enumerate(episodes):
        torch.testing.assert_close(scores.logprobs[i, :len(e.actions)], torch.tensor(e.logprobs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [1, 2])
def test_chunked_prefill_of_prompts_of_different_lengths_matches_a_full_forward(chunk):
    envs = gym.make_vec("TextSentiment-v0", num_envs=5, model="tiny", autoreset_mode="same_step", max_new_tokens=5)
    policy = _policy(envs)
    policy.prefill_chunk = chunk
    record = collect_rollout(envs, policy, indices=[3, 0, 9, 0, 4], seed=0, generator=torch.Generator().manual_seed(0))
    episodes = list(record)
    assert len({len(e.prompt_ids) for e in episodes}) >= 3  # the chunks really differ in length
    with torch.no_grad():
        scores = policy.evaluate(record.batch)
    for i, e in enumerate(episodes):
        n = len(e.actions)
        torch.testing.assert_close(scores.logprobs[i, :n], torch.tensor(e.logprobs), atol=1e-5, rtol=0)
        torch.testing.assert_close(scores.values[i, :n], torch.tensor(e.values), atol=1e-5, rtol=0)


def test_a_lora_checkpoint_whose_adapter_fits_nothing_is_refused(tmp_path):
    """peft matches adapter weights by name and says nothing when none match: the policy would be the
    bare base model, evaluated as trained or resumed from a fresh adapter."""
    from safetensors.torch import load_file, save_file

    from textenv.io import atomic_dir

    tok = gym.make("TextCount-v0", model="tiny").unwrapped.tokenizer
    policy = LMActorCritic.from_pretrained("tiny", tokenizer=tok, lora={"r": 2, "lora_alpha": 4,
                                                                         "target_modules": "all-linear"})
    with atomic_dir(tmp_path / "lora") as tmp:
        policy.save_pretrained(tmp)
    again = LMActorCritic.from_pretrained(str(tmp_path / "lora"), tokenizer=tok)  # a sound one loads
    assert again.is_lora and getattr(again.model, "textenv_base", None) == "tiny"
    file = tmp_path / "lora" / "adapter" / "adapter_model.safetensors"
    weights = load_file(file)
    save_file({k.replace("lora_", "lorax_"): v for k, v in weights.items()}, file)
    with pytest.raises(ValueError, match="adapter .* does not fit its base model: 16 adapter weights missing"):
        LMActorCritic.from_pretrained(str(tmp_path / "lora"), tokenizer=tok)
