"""External agents plug in: stable-baselines3 PPO with its stock MultiInputPolicy (an MLP over the
token-id arrays; a real LM policy for SB3 is agents' job) runs on the synthetic task."""

import gymnasium as gym
import numpy as np
import pytest


@pytest.mark.slow
def test_sb3_ppo_multi_input_policy_learns_without_error():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("TextCount-v0", n_envs=2, seed=0, env_kwargs={"model": "tiny"})
    model = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=32, n_epochs=1, seed=0,
                policy_kwargs={"net_arch": [32]}, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    after = list(model.policy.parameters())
    assert any(not np.allclose(a.detach().numpy(), b.numpy()) for a, b in zip(after, before, strict=True))
    obs = venv.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2,) and ((0 <= actions) & (actions < venv.action_space.n)).all()


def test_sb3_env_checker_accepts_the_env():
    from stable_baselines3.common.env_checker import check_env

    check_env(gym.make("TextCount-v0", model="tiny").unwrapped, warn=True)
