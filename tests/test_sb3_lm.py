"""SB3 with a real LM policy (agents.sb3.LMPolicy) and NLPO-style top-k masking (TopKMaskWrapper),
on the synthetic task with the tiny model."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.sb3 import LMPolicy, TopKMaskWrapper, topk_mask


def _lm_ppo(venv, **kwargs):
    from stable_baselines3 import PPO

    tok = venv.get_attr("tokenizer")[0]
    return PPO(LMPolicy, venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
               learning_rate=1e-3, policy_kwargs={"model_name": "tiny", "tokenizer": tok, **kwargs})


def test_sb3_ppo_with_lm_policy_learns_and_moves_the_lm():
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("TextCount-v0", n_envs=2, seed=0, env_kwargs={"model": "tiny"})
    model = _lm_ppo(venv)
    before = {n: p.detach().clone() for n, p in model.policy.lm.named_parameters()}
    model.learn(total_timesteps=128)
    assert model.num_timesteps >= 128
    moved = [n for n, p in model.policy.lm.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert moved, "PPO did not change any LM parameter"
    obs = venv.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2,) and ((0 <= actions) & (actions < venv.action_space.n)).all()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_lm_policy_logprob_is_log_softmax_at_last_real_token(temperature):
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("TextCount-v0", n_envs=1, seed=0, env_kwargs={"model": "tiny"})
    policy = _lm_ppo(venv, sampling=temperature).policy
    env = gym.make("TextCount-v0", model="tiny")
    obs, _ = env.reset(seed=3)
    for token in (5, 17, 42):  # a few generated tokens, so the context has padding in the middle
        obs, *_ = env.step(token)
    ids, mask = obs["input_ids"], obs["attention_mask"]
    assert mask[0] == 0 and mask[-1] == 0  # left-padded prompt and trailing padding
    real = torch.as_tensor(ids[mask == 1])[None]  # the unpadded context, positions 0..n-1
    with torch.no_grad():
        expected = torch.log_softmax(policy.lm(input_ids=real).logits[0, -1] / temperature, -1)
        # SB3 hands the policy float observations, as its buffers store them
        batch = {k: torch.as_tensor(v, dtype=torch.float32)[None] for k, v in obs.items()}
        actions = torch.tensor([3, 5, int(expected.argmax())])
        _, logp, _ = policy.evaluate_actions({k: v.expand(3, -1) for k, v in batch.items()}, actions)
        dist_logp = policy.get_distribution(batch).distribution.logits[0]
    np.testing.assert_allclose(logp.numpy(), expected[actions].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(torch.log_softmax(dist_logp, -1).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    env.close()


def test_topk_mask_holds_k_tokens_and_the_greedy_one():
    env = TopKMaskWrapper(gym.make("TextCount-v0", model="tiny"), k=8)
    n = env.action_space.n
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        mask = env.action_masks()
        assert mask.shape == (n,) and mask.dtype == bool and mask.sum() == 8 < n
        ids, att = (torch.as_tensor(obs[k])[None].long() for k in ("input_ids", "attention_mask"))
        with torch.no_grad():
            logits = env.mask_model(input_ids=ids[att == 1][None]).logits[0, -1]
        assert mask[int(logits.argmax())]
        assert set(np.flatnonzero(mask)) == set(torch.topk(logits, 8).indices.tolist())
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        if terminated or truncated:
            obs, _ = env.reset()
    # top-p keeps a prefix of the top-k ranking, never empty; batched obs give one row each
    small = topk_mask(env.mask_model, obs, k=8, top_p=1e-6)
    assert small.sum() == 1 and (small & env.action_masks()).sum() == 1
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    assert topk_mask(env.mask_model, batch, k=8).shape == (2, n)
    env.close()


def test_maskable_ppo_trains_on_the_topk_wrapper():
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("TextCount-v0", n_envs=2, seed=0, env_kwargs={"model": "tiny"},
                        wrapper_class=TopKMaskWrapper, wrapper_kwargs={"k": 8})
    assert is_masking_supported(venv)
    venv.reset()
    masks = get_action_masks(venv)
    assert masks.shape == (2, venv.action_space.n) and (masks.sum(-1) == 8).all()
    model = MaskablePPO("MultiInputPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0,
                        policy_kwargs={"net_arch": [32]}, device="cpu")
    model.learn(total_timesteps=128)
    assert model.num_timesteps >= 128
    obs = venv.reset()
    actions, _ = model.predict(obs, action_masks=get_action_masks(venv), deterministic=True)
    assert all(get_action_masks(venv)[i, a] for i, a in enumerate(actions))
