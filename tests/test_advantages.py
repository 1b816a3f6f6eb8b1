"""The update's maths against hand-computed numbers."""

import math

import pytest
import torch

from agents.advantages import (
    AdaptiveKLController,
    FixedKLController,
    UpdateBatch,
    aggregate,
    gae,
    group_advantages,
    length_penalty,
    ppo_loss,
    update_batch,
    whiten,
)


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


def _loss_cfg(advantage: str = "grpo", loss_type: str = "token"):
    from types import SimpleNamespace

    return SimpleNamespace(clip_range=0.2, clip_range_value=0.5, vf_coef=0.1, ent_coef=0.1, advantage=advantage,
                           loss_type=loss_type)


def _two_tokens_and_a_padded_row() -> tuple[torch.Tensor, torch.Tensor, UpdateBatch]:
    # row 0: ratios 1.5 and 0.5 with advantages +1 and -1 (both clipped); row 1 is padding with
    # extreme numbers that must not count
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    logprobs = torch.tensor([[math.log(1.5), math.log(0.5)], [5.0, 5.0]])
    entropy = torch.tensor([[1.0, 3.0], [100.0, 100.0]])
    batch = UpdateBatch(mask=mask, old_logp=torch.zeros(2, 2), old_values=torch.zeros(2, 2),
                         advantages=torch.tensor([[1.0, -1.0], [100.0, 100.0]]),
                         returns=torch.tensor([[2.0, 0.1], [50.0, 50.0]]))
    return logprobs, entropy, batch


def test_ppo_loss_matches_hand_computation():
    logprobs, entropy, batch = _two_tokens_and_a_padded_row()
    loss, stats = ppo_loss(logprobs, entropy, None, batch, _loss_cfg())
    # pg: max(-1*1.5, -1*1.2) = -1.2 and max(0.5, 0.8) = 0.8 -> mean -0.2; entropy mean 2
    assert float(stats["pg"]) == pytest.approx(-0.2)
    assert float(stats["ent"]) == pytest.approx(2.0)
    assert float(loss) == pytest.approx(-0.2 - 0.1 * 2.0)
    assert float(stats["vf"]) == 0.0
    kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2  # (r - 1) - log r
    assert float(stats["approx_kl"]) == pytest.approx(kl)
    assert float(stats["clipfrac"]) == pytest.approx(1.0)


def test_ppo_loss_adds_the_clipped_value_loss_with_a_critic():
    logprobs, entropy, batch = _two_tokens_and_a_padded_row()
    values = torch.tensor([[1.0, 1.0], [9.0, 9.0]])
    loss, stats = ppo_loss(logprobs, entropy, values, batch, _loss_cfg("gae"))
    # v_clip = 0 + clamp(1, -0.5, 0.5) = 0.5: max(1, 2.25) and max(0.81, 0.16) -> 0.5 * mean = 0.765
    assert float(stats["vf"]) == pytest.approx(0.765)
    assert float(loss) == pytest.approx(-0.4 + 0.1 * 0.765)
    with pytest.raises(ValueError, match="value head"):
        ppo_loss(logprobs, entropy, None, batch, _loss_cfg("gae"))


def test_ppo_loss_gradient_flows_only_through_real_tokens():
    logprobs, entropy, batch = _two_tokens_and_a_padded_row()
    logprobs.requires_grad_(True)
    loss, _ = ppo_loss(logprobs, entropy, None, batch, _loss_cfg())
    loss.backward()
    # both real tokens are clipped (no gradient); padding gets none either
    assert logprobs.grad.abs().sum() == 0
    batch = batch._replace(advantages=torch.tensor([[1.0, 1.0], [100.0, 100.0]]))  # token 2: ratio 0.5 < 0.8
    logprobs.grad = None
    ppo_loss(logprobs, entropy, None, batch, _loss_cfg())[0].backward()
    assert logprobs.grad[0, 1] == pytest.approx(-0.5 / 2) and logprobs.grad[0, 0] == 0
    assert logprobs.grad[1].abs().sum() == 0


def test_rollout_batch_gae_puts_the_score_on_the_last_token_and_the_kl_on_every_token():
    kl = torch.tensor([[0.5, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rb = update_batch(torch.tensor([2.0]), kl, mask, torch.zeros(1, 3), torch.zeros(1, 3), kl_coef=0.1,
                       advantage="gae", gamma=1.0, lam=1.0, whiten_advantages=False)
    # rewards -0.05, -0.1 + 2: returns-to-go 1.85, 1.9, then padding
    assert rb.advantages[0].tolist() == pytest.approx([1.85, 1.9, 0.0])
    assert rb.returns[0].tolist() == pytest.approx([1.85, 1.9, 0.0])
    assert rb.rows(torch.tensor([0])).mask.tolist() == mask.tolist()


def test_per_turn_credit_puts_each_turns_reward_at_its_last_action_and_the_shaping_at_the_end():
    """Two turns of two actions, rewards 1 and 2 at each turn's last action, an episode reward of 2.5
    (its return 3 less 0.5 of shaping), an empty third slot of padding. Reward-to-go (gamma = lam =
    1, no values): the first turn is credited 2.5 either way (its own reward and the later ones),
    but the second turn only its own 2 less the shaping under per-turn credit, 2.5 without."""
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    turns = torch.tensor([[0.0, 1.0, 0.0, 2.0, 0.0]], dtype=torch.float64)
    zeros = torch.zeros(1, 5)
    kw = dict(kl_coef=0.0, advantage="gae", gamma=1.0, lam=1.0, whiten_advantages=False)
    episode = update_batch(torch.tensor([2.5]), zeros, mask, zeros, zeros, **kw)
    per_turn = update_batch(torch.tensor([2.5]), zeros, mask, zeros, zeros, action_rewards=turns, **kw)
    assert episode.advantages[0].tolist() == pytest.approx([2.5, 2.5, 2.5, 2.5, 0.0])
    assert per_turn.advantages[0].tolist() == pytest.approx([2.5, 2.5, 1.5, 1.5, 0.0])
    lam = update_batch(torch.tensor([2.5]), zeros, mask, zeros, zeros, action_rewards=turns,
                        **{**kw, "lam": 0.5})  # rewards 0, 1, 0, 1.5: adv_t = r_t + 0.5 adv_t+1
    assert lam.advantages[0].tolist() == pytest.approx([0.6875, 1.375, 0.75, 1.5, 0.0])
    with pytest.raises(ValueError, match="need the gae advantage"):
        update_batch(torch.tensor([2.5, 1.0]), torch.zeros(2, 5), mask.repeat(2, 1), torch.zeros(2, 5),
                      torch.zeros(2, 5), kl_coef=0.0, advantage="rloo", group_size=2, action_rewards=turns.repeat(2, 1))


def test_rollout_batch_group_advantage_subtracts_the_summed_kl_per_episode():
    kl = torch.tensor([[0.5, 0.0], [1.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    rb = update_batch(torch.tensor([1.0, 3.0]), kl, mask, torch.zeros(2, 2), torch.zeros(2, 2), kl_coef=0.1,
                       advantage="rloo", group_size=2)
    # sequence rewards 0.95 and 2.9; RLOO with 2 samples: +-1.95 on every real token
    assert rb.advantages.flatten().tolist() == pytest.approx([-1.95, 0.0, 1.95, 1.95])
    assert rb.returns.abs().sum() == 0


def test_group_advantages_without_std_scaling_is_dr_grpos():
    scores = torch.tensor([1.0, 0.0, 2.0, 0.0, 4.0, 8.0])  # group stds (unbiased) 1 and 4
    torch.testing.assert_close(group_advantages(scores, 3, "grpo"), torch.tensor([0.0, -1.0, 1.0, -1.0, 0.0, 1.0]),
                               atol=1e-5, rtol=0)
    # score - group mean only (means 1 and 4): the second group is no longer shrunk by its std
    assert group_advantages(scores, 3, "grpo", scale=False).tolist() == [0.0, -1.0, 1.0, -4.0, 0.0, 4.0]
    assert group_advantages(scores, 3, "rloo", scale=False).tolist() == group_advantages(scores, 3, "rloo").tolist()
    rb = update_batch(torch.tensor([0.0, 4.0]), torch.zeros(2, 1), torch.ones(2, 1), torch.zeros(2, 1),
                       torch.zeros(2, 1), kl_coef=0.0, advantage="grpo", group_size=2, scale_group=False)
    assert rb.advantages.flatten().tolist() == [-2.0, 2.0]


def _lengths_one_and_three() -> tuple[torch.Tensor, torch.Tensor, UpdateBatch]:
    # episode 0: 1 token, advantage -2 (a short wrong answer); episode 1: 3 tokens, advantage +1;
    # ratios are 1 (logprobs = old_logp), so per-token pg = -advantage: [2] and [-1, -1, -1]
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([[-2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    entropy = torch.tensor([[1.0, 9.0, 9.0], [1.0, 2.0, 3.0]])  # the 9s are padding
    batch = UpdateBatch(mask=mask, old_logp=torch.zeros(2, 3), old_values=torch.zeros(2, 3), advantages=adv,
                         returns=torch.zeros(2, 3))
    return torch.zeros(2, 3), entropy, batch


@pytest.mark.parametrize(("loss_type", "pg", "ent", "grads"), [
    # token: sum / 4 real tokens: pg (2 - 3) / 4, entropy (1 + 6) / 4; d pg / d logp = -adv / 4
    ("token", -0.25, 1.75, [0.5, -0.25]),
    # sequence: per-episode means 2 and -1, then their mean; entropy (1 + 2) / 2; -adv / (2 * length):
    # the short episode's token is pushed 6 times harder than each of the long one's
    ("sequence", 0.5, 1.5, [1.0, -1 / 6]),
    # dr_grpo, budget 4: sum / (2 episodes * 4) = -1/8, entropy 7/8; -adv / 8 on every token
    ("dr_grpo", -0.125, 0.875, [0.25, -0.125]),
])
def test_loss_types_aggregate_two_episodes_of_lengths_one_and_three(loss_type, pg, ent, grads):
    logprobs, entropy, batch = _lengths_one_and_three()
    logprobs.requires_grad_(True)
    loss, stats = ppo_loss(logprobs, entropy, None, batch, _loss_cfg(loss_type=loss_type), max_tokens=4)
    assert float(stats["pg"].detach()) == pytest.approx(pg)
    assert float(stats["ent"]) == pytest.approx(ent)
    assert float(loss.detach()) == pytest.approx(pg - 0.1 * ent)
    assert float(stats["approx_kl"]) == 0.0 and float(stats["clipfrac"]) == 0.0  # token means whatever the type
    stats["pg"].backward()
    assert logprobs.grad[0, 0] == pytest.approx(grads[0])
    assert logprobs.grad[1].tolist() == pytest.approx([grads[1]] * 3)
    assert logprobs.grad[0, 1:].abs().sum() == 0


def test_token_loss_type_is_the_plain_token_mean_bit_for_bit():
    logprobs, entropy, batch = _two_tokens_and_a_padded_row()
    loss, stats = ppo_loss(logprobs, entropy, None, batch, _loss_cfg(loss_type="token"))
    m = batch.mask
    ratio = ((logprobs - batch.old_logp) * m).exp()
    pg = torch.max(-batch.advantages * ratio, -batch.advantages * ratio.clamp(0.8, 1.2))
    before = (pg * m).sum() / m.sum().clamp(min=1) - 0.1 * (entropy * m).sum() / m.sum().clamp(min=1)
    assert torch.equal(loss, before)
    assert torch.equal(aggregate(pg, m, "token"), stats["pg"])


def test_bad_loss_type_and_dr_grpo_without_a_budget_raise():
    logprobs, entropy, batch = _lengths_one_and_three()
    with pytest.raises(ValueError, match="unknown loss_type 'mean'"):
        ppo_loss(logprobs, entropy, None, batch, _loss_cfg(loss_type="mean"))
    with pytest.raises(ValueError, match="dr_grpo' needs max_tokens"):
        ppo_loss(logprobs, entropy, None, batch, _loss_cfg(loss_type="dr_grpo"))
    with pytest.raises(ValueError, match="max_tokens 2 is below"):
        ppo_loss(logprobs, entropy, None, batch, _loss_cfg(loss_type="dr_grpo"), max_tokens=2)


def test_length_penalty_is_zero_inside_the_band_and_linear_outside():
    # L0 = 10, band (0.75, 1.5) -> [7.5, 15], coef 2: penalty 2 * distance / 10
    lengths = torch.tensor([5, 7, 7.5, 10, 15, 20])
    pen = length_penalty(lengths, 10.0, (0.75, 1.5), 2.0)
    # 5: 2 * 2.5 / 10 = 0.5; 7: 2 * 0.5 / 10 = 0.1; 7.5, 10, 15: inside; 20: 2 * 5 / 10 = 1.0
    assert pen.tolist() == pytest.approx([0.5, 0.1, 0.0, 0.0, 0.0, 1.0])
    assert length_penalty(lengths, 10.0, (0.0, math.inf), 2.0).tolist() == [0.0] * 6  # no band at all
    assert length_penalty(torch.tensor([9, 10, 12]), 10.0, (1.0, 1.0), 1.0).tolist() == pytest.approx([0.1, 0.0, 0.2])
    with pytest.raises(ValueError, match="ref_length must be > 0"):
        length_penalty(lengths, 0.0, (0.75, 1.5), 1.0)
