"""The update's maths against hand-computed numbers."""

import pytest
import torch

from agents.advantages import AdaptiveKLController, FixedKLController, gae, group_advantages, whiten


def test_gae_matches_hand_computation():
    # one episode of 3 tokens, gamma=0.9, lambda=0.5:
    # deltas: d2 = 1 - 0.3 = 0.7; d1 = 0 + 0.9*0.3 - 0.2 = 0.07; d0 = 0 + 0.9*0.2 - 0.1 = 0.08
    # A2 = 0.7; A1 = 0.07 + 0.45*0.7 = 0.385; A0 = 0.08 + 0.45*0.385 = 0.25325
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.1, 0.2, 0.3, 9.9]])  # 9.9 sits in padding and must be ignored
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    torch.testing.assert_close(adv, torch.tensor([[0.25325, 0.385, 0.7, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.35325, 0.585, 1.0, 0.0]]))


def test_gae_with_lambda_one_is_the_discounted_return_minus_value():
    rewards = torch.tensor([[0.5, -1.0, 2.0]])
    values = torch.tensor([[0.3, 0.1, -0.4]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=0.5, lam=1.0)
    expected_returns = torch.tensor([[0.5 - 0.5 + 0.5, -1.0 + 1.0, 2.0]])
    torch.testing.assert_close(ret, expected_returns)
    torch.testing.assert_close(adv, expected_returns - values)


def test_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, m)
    torch.testing.assert_close(w, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-4, rtol=0)


def test_group_advantages_grpo_and_rloo():
    scores = torch.tensor([1.0, 0.0, 2.0, 5.0, 5.0, 5.0])  # two groups of 3
    rloo = group_advantages(scores, 3, "rloo")
    # 1 - mean(0, 2) = 0; 0 - mean(1, 2) = -1.5; 2 - mean(1, 0) = 1.5; a constant group gives 0
    torch.testing.assert_close(rloo, torch.tensor([0.0, -1.5, 1.5, 0.0, 0.0, 0.0]))
    grpo = group_advantages(scores, 3, "grpo")
    torch.testing.assert_close(grpo[:3], torch.tensor([0.0, -1.0, 1.0]), atol=1e-5, rtol=0)
    assert grpo[3:].abs().max() < 1e-5
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(scores, 1, "grpo")
    with pytest.raises(ValueError, match="unknown"):
        group_advantages(scores, 3, "ppo")


def test_adaptive_kl_controller_moves_the_coefficient_the_right_way():
    high = AdaptiveKLController(0.1, target=1.0, horizon=100)
    high.update(current_kl=5.0, n_steps=10)  # error clipped to +0.2 -> x(1 + 0.02)
    assert high.value == pytest.approx(0.102)
    low = AdaptiveKLController(0.1, target=1.0, horizon=100)
    low.update(current_kl=0.5, n_steps=10)  # error -0.5 clipped to -0.2 -> x(1 - 0.02)
    assert low.value == pytest.approx(0.098)
    near = AdaptiveKLController(0.1, target=1.0, horizon=100)
    near.update(current_kl=1.1, n_steps=50)  # error +0.1 -> x1.05
    assert near.value == pytest.approx(0.105)
    fixed = FixedKLController(0.3)
    fixed.update(100.0, 10)
    assert fixed.value == 0.3
