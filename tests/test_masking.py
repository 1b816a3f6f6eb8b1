"""NLPO action masking: the project's PPO (agents.masking) and SB3's MaskablePPO (MaskableLMPolicy)."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_ppo import _cfg

from agents.masking import TopKMasker, allowed_tokens
from agents.policy import LMActorCritic, Sampling
from agents.ppo import PPOTrainer
from agents.rollout import collect_rollout
from agents.sb3 import MaskableLMPolicy, TopKMaskWrapper
from textenv.models import load_model


def test_allowed_tokens_top_k_then_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 0.0, 1.0]])
    assert allowed_tokens(logits, 2).tolist() == [[True, True, False, False], [False, True, False, True]]
    # probs of row 0: [0.61, 0.22, 0.14, 0.03]: 0.5 is reached by the first token alone
    assert allowed_tokens(logits[:1], 3, top_p=0.5).tolist() == [[True, False, False, False]]
    assert allowed_tokens(logits[:1], 3, top_p=0.7).tolist() == [[True, True, False, False]]
    with pytest.raises(ValueError, match="top_k"):
        allowed_tokens(logits, 0)
    with pytest.raises(ValueError, match="top_p"):
        allowed_tokens(logits, 2, top_p=0.0)


@pytest.mark.parametrize("sampling", [Sampling(), Sampling(temperature=0.7, top_p=0.9)])
def test_masked_rollout_samples_inside_the_mask_and_rescoring_matches(sampling):
    envs = gym.make_vec("TextCount-v0", num_envs=4, model="tiny", autoreset_mode="same_step", max_new_tokens=10)
    tok = envs.unwrapped.tokenizer
    policy = LMActorCritic.from_pretrained("tiny", tokenizer=tok, sampling=sampling)
    _, other = load_model("tiny", tokenizer=tok, seed=1)  # a masking model that disagrees with the policy
    masker = TopKMasker(other, tok, top_k=5)
    record = collect_rollout(envs, policy, [0, 1, 2, 3], seed=0, generator=torch.Generator().manual_seed(0),
                       masker=masker)
    episodes = list(record)
    batch = record.batch
    allowed = masker.allowed_for(batch)
    assert allowed.shape[:2] == (4, batch.gen_len) and (allowed.sum(-1) == 5).all()
    with torch.no_grad():
        masked = policy.evaluate(batch, allowed=allowed)
        unmasked = policy.evaluate(batch)
    for i, e in enumerate(episodes):
        n = len(e.actions)
        # every sampled token is one of the masking model's top 5 at that position
        assert allowed[i, torch.arange(n), torch.tensor(e.actions)].all()
        torch.testing.assert_close(masked.logprobs[i, :n], torch.tensor(e.logprobs), atol=1e-5, rtol=0)
    # the mask renormalises over 5 tokens: more mass per allowed token, entropy at most log 5
    m = masked.mask > 0
    assert (masked.logprobs[m] >= unmasked.logprobs[m] - 1e-6).all()
    assert (masked.logprobs[m] > unmasked.logprobs[m] + 1e-3).any()
    assert (masked.entropy[m] <= math.log(5) + 1e-5).all()
    # the masking model was copied and frozen, never a parameter of the policy
    assert all(not p.requires_grad for p in masker.lm.model.parameters())
    assert masker.lm.model is not other


def test_ppo_with_a_frozen_mask_shares_the_reference(tmp_path):
    trainer = PPOTrainer(_cfg(tmp_path, mask_top_k=8))
    assert trainer.masker.lm.model is trainer.reference  # no second copy of the weights
    before = {k: v.clone() for k, v in trainer.masker.lm.model.state_dict().items()}
    metrics = trainer.step()
    for key in ("losses/policy_loss", "losses/value_loss", "losses/approx_kl", "objective/kl", "charts/reward_mean"):
        assert math.isfinite(metrics[key]), key
    after = trainer.masker.lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    policy_sd = trainer.policy.model.state_dict()
    assert any(not torch.equal(policy_sd[k], after[k]) for k in after)


def test_ppo_mask_refresh_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    kw = dict(mask_top_k=8, mask_update_every=1)
    full = PPOTrainer(_cfg(tmp_path / "a", iterations=2, **kw))
    history = full.train()
    # refreshed after every iteration: the masking model is the current policy
    policy_sd = full.policy.model.state_dict()
    assert all(torch.equal(v, policy_sd[k]) for k, v in full.masker.lm.model.state_dict().items())
    part = PPOTrainer(_cfg(tmp_path / "b", iterations=1, **kw))
    part.train()
    assert (part.dir / "checkpoint" / "mask_model.safetensors").exists()
    resumed = PPOTrainer(_cfg(tmp_path / "b", iterations=2, resume=str(part.dir), **kw))
    resumed_history = resumed.train()
    for key, value in history[1].items():
        if not key.endswith("per_s"):
            assert resumed_history[0][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key


def test_ppo_rejects_bad_mask_settings(tmp_path):
    with pytest.raises(ValueError, match="mask_top_k"):
        PPOTrainer(_cfg(tmp_path, mask_top_k=-1))


# -- stable-baselines3 / sb3-contrib --------------------------------------------------------------


def _maskable(venv, **kwargs):
    from sb3_contrib import MaskablePPO

    tok = venv.get_attr("tokenizer")[0]
    return MaskablePPO(MaskableLMPolicy, venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
                       learning_rate=1e-3, policy_kwargs={"model_name": "tiny", "tokenizer": tok, **kwargs})


def _venv(n_envs, k=8):
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env("TextCount-v0", n_envs=n_envs, seed=0, env_kwargs={"model": "tiny"},
                        wrapper_class=TopKMaskWrapper, wrapper_kwargs={"k": k})


def test_maskable_ppo_with_the_lm_policy_learns_inside_the_mask():
    from sb3_contrib.common.maskable.utils import get_action_masks

    venv = _venv(2)
    model = _maskable(venv)
    before = {n: p.detach().clone() for n, p in model.policy.lm.named_parameters()}
    model.learn(total_timesteps=128)
    assert model.num_timesteps >= 128
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.policy.lm.named_parameters())
    obs = venv.reset()
    for _ in range(5):
        masks = get_action_masks(venv)
        actions, _ = model.predict(obs, action_masks=masks)  # sampled, not greedy
        assert all(masks[i, a] for i, a in enumerate(actions))
        obs, *_ = venv.step(actions)


def test_maskable_lm_policy_logprobs_are_the_renormalised_masked_softmax():
    venv = _venv(1, k=6)
    policy = _maskable(venv, sampling=0.8).policy
    env = TopKMaskWrapper(gym.make("TextCount-v0", model="tiny"), k=6)
    obs, _ = env.reset(seed=2)
    obs, *_ = env.step(7)
    mask = env.action_masks()
    ids = torch.as_tensor(obs["input_ids"][obs["attention_mask"] == 1])[None]
    batch = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in obs.items()}
    with torch.no_grad():
        logits = policy.lm(input_ids=ids).logits[0, -1] / 0.8
        expected = torch.log_softmax(logits.masked_fill(~torch.as_tensor(mask), float("-inf")), -1)
        allowed = np.flatnonzero(mask)
        actions = torch.as_tensor(allowed)
        masks = torch.as_tensor(np.stack([mask] * len(allowed)))
        _, logp, entropy = policy.evaluate_actions({k: v.expand(len(allowed), -1) for k, v in batch.items()},
                                                   actions, action_masks=masks)
    np.testing.assert_allclose(logp.numpy(), expected[actions].numpy(), rtol=1e-5, atol=1e-5)
    p = expected[actions].exp()
    np.testing.assert_allclose(entropy.numpy(), float(-(p * p.log()).sum()), rtol=1e-5)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
    env.close()
