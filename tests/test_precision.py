"""The bf16 (GPU) code path, run on the CPU: bf16 autocast works there, and CI has no GPU.

Before these tests, PPO crashed at its first rollout on a GPU: under autocast the value head returns
bf16, written into an fp32 buffer. Every trainer, the eval suite and the precision switch itself
run here with ``precision="bf16"`` on the CPU.
"""

import math

import numpy as np
import pytest
import torch

from agents.ppo import PPOConfig, PPOTrainer
from textenv.devices import autocast, resolve_device, resolve_precision

TINY = dict(env="TextCount-v0", model="tiny", iterations=1, prompts_per_iter=4, max_new_tokens=8, epochs=1,
            minibatch_size=4, lr=1e-3, tensorboard=False, progress=False, checkpoint_every=1, device="cpu")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTENV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")


def test_precision_switch():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with autocast(cpu, "bf16"):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("kw", [
    {"advantage": "gae"},
    {"advantage": "grpo", "samples_per_prompt": 2, "prompts_per_iter": 2},
    {"advantage": "gae", "mask_top_k": 16},
    {"advantage": "grpo", "samples_per_prompt": 2, "prompts_per_iter": 2, "mask_top_k": 16, "mask_update_every": 1},
    # multi-turn: the LM head applied by the learner itself, at the actions only, and the mask selected there
    {"env": "TextDialogue-v0", "max_new_tokens": 120, "advantage": "gae", "mask_top_k": 16},
], ids=["gae", "grpo", "gae-nlpo", "grpo-nlpo", "dialogue-nlpo"])
def test_ppo_iteration_under_bf16(tmp_path, kw):
    trainer = PPOTrainer(PPOConfig(**{**TINY, "runs": str(tmp_path), "precision": "bf16", **kw}))
    before = [p.detach().clone() for p in trainer.policy.model.parameters()]
    episodes, _ = trainer.collect(1)
    assert all(isinstance(v, float) and math.isfinite(v) for e in episodes for v in e.values + e.logprobs)
    metrics = trainer.step()
    assert metrics["failures/skipped"] == 0.0
    assert all(math.isfinite(metrics[k]) for k in ("losses/policy_loss", "objective/kl", "charts/reward_mean"))
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.policy.model.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in trainer.policy.parameters())  # autocast, not a cast of weights


def test_bf16_rollout_values_and_logprobs_match_fp32(tmp_path):
    """Same weights, same seeds: bf16 values and log-probs stay close to fp32's (a sign the bf16
    path computes the same thing, not only that it does not crash)."""
    fp32 = PPOTrainer(PPOConfig(**{**TINY, "runs": str(tmp_path / "a")}))
    bf16 = PPOTrainer(PPOConfig(**{**TINY, "runs": str(tmp_path / "b"), "precision": "bf16"}))
    bf16.policy.load_state_dict(fp32.policy.state_dict())
    torch.nn.init.normal_(fp32.policy.value_head.weight, std=0.1)
    bf16.policy.value_head.load_state_dict(fp32.policy.value_head.state_dict())
    a, _ = fp32.collect(1)
    b, _ = bf16.collect(1)
    n = min(len(a[0].actions), len(b[0].actions))
    same = [i for i in range(n) if a[0].actions[: i + 1] == b[0].actions[: i + 1]]
    assert same, "the first sampled token already differs"
    k = same[-1] + 1
    assert np.allclose(a[0].logprobs[:k], b[0].logprobs[:k], atol=0.1)
    assert np.allclose(a[0].values[:k], b[0].values[:k], atol=0.05)


def test_eval_during_training_logs_heldout_metrics_and_samples(tmp_path):
    import json

    from agents.tracking import read_metrics

    cfg = PPOConfig(**{**TINY, "runs": str(tmp_path), "iterations": 2, "eval_every": 1, "eval_prompts": 6,
                       "precision": "bf16"})
    trainer = PPOTrainer(cfg)
    trainer.train()
    rows = read_metrics(trainer.dir / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]  # 0: before the first update
    for r in rows:
        assert math.isfinite(r["eval/reward_mean"]) and r["eval/episode_length"] > 0 and math.isfinite(r["eval/kl"])
    assert abs(rows[0]["eval/kl"]) < 1e-4 and "charts/reward_mean" not in rows[0]
    samples = [json.loads(line) for line in (trainer.dir / "samples.jsonl").read_text().splitlines()]
    assert {s["iteration"] for s in samples} == {0, 1, 2} and all("text" in s and "prompt" in s for s in samples)
    # the held-out prompts are fixed: the same indices at every evaluation
    assert [s["index"] for s in samples if s["iteration"] == 1] == [s["index"] for s in samples if s["iteration"] == 2]


def test_eval_heldout_kl_is_zero_before_any_update(tmp_path):
    trainer = PPOTrainer(PPOConfig(**{**TINY, "runs": str(tmp_path), "eval_every": 1, "eval_prompts": 4}))
    metrics, samples = trainer.evaluate_heldout()
    assert abs(metrics["eval/kl"]) < 1e-4 and len(samples) == 4


def test_sft_under_bf16(tmp_path):
    from agents.sft import SFTConfig, fit

    result = fit(SFTConfig(env="TextCount-v0", model="tiny", epochs=1, max_steps=3, batch_size=4, lr=1e-3,
                           limit=12, eval_limit=4, device="cpu", precision="bf16"))
    assert math.isfinite(result.metrics["final_val_loss"])
    assert result.metrics["final_val_loss"] < result.metrics["initial_val_loss"]


def test_reward_model_under_bf16(tmp_path):
    from agents.reward_model import RewardModelConfig, train_reward_model

    metrics = train_reward_model(RewardModelConfig(
        env="TextCount-v0", model="tiny", max_steps=4, batch_size=4, lr=1e-3, max_length=32, device="cpu",
        precision="bf16", out=str(tmp_path / "rm"), limit=16, eval_limit=8, samples_per_prompt=2,
        sample_prompts=4, eval_sample_prompts=4, sample_max_new_tokens=6))
    assert math.isfinite(metrics["eval/loss_after"]) and metrics["steps"] == 4


def test_eval_batch_under_bf16():
    from evals.generate import Decoding
    from evals.suite import SuiteConfig, evaluate_suite

    base = dict(envs=("TextCount-v0",), model="tiny", policies=("base=tiny", "random"), limit=4,
                decoding=Decoding(temperature=0.7, max_new_tokens=6, batch_size=4), n_boot=50, progress=False,
                device="cpu")
    bf16 = evaluate_suite(SuiteConfig(**base, precision="bf16"))
    fp32 = evaluate_suite(SuiteConfig(**base, precision="fp32"))
    assert set(bf16["metric"]) == set(fp32["metric"]) and bf16["value"].notna().all()


def test_grad_norm_guard_leaves_weights_finite(tmp_path, monkeypatch):
    """A non-finite gradient skips the iteration without a copy of the weights to restore: the
    guard stops it before ``optimizer.step()``."""
    trainer = PPOTrainer(PPOConfig(**{**TINY, "runs": str(tmp_path)}))
    original = torch.nn.utils.clip_grad_norm_

    def poisoned(params, max_norm, *a, **k):
        params = list(params)
        params[0].grad.fill_(float("nan"))
        return original(params, max_norm, *a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", poisoned)
    before = [p.detach().clone() for p in trainer.policy.parameters()]
    metrics = trainer.step()
    assert metrics["failures/skipped"] == 1.0
    assert all(torch.equal(a, p) for a, p in zip(before, trainer.policy.parameters(), strict=True))
    assert all(not s for s in trainer.optimizer.state.values())  # Adam's moments untouched too


def test_gradient_checkpointing_and_frozen_layers_give_the_same_update(tmp_path):
    """Recomputing activations changes memory, not maths: one PPO iteration with gradient
    checkpointing lands on the same weights; with train_layers=1 only the top block (and the
    value head) move."""
    plain = PPOTrainer(PPOConfig(**{**TINY, "runs": str(tmp_path / "a")}))
    ckpt = PPOTrainer(PPOConfig(**{**TINY, "runs": str(tmp_path / "b"), "gradient_checkpointing": True}))
    calls = {"plain": 0, "ckpt": 0}  # forwards of a checkpointed layer run while a backward pass runs
    in_backward = [False]
    backward = torch.Tensor.backward

    def flagged(self, *a, **k):
        in_backward[0] = True
        try:
            return backward(self, *a, **k)
        finally:
            in_backward[0] = False

    def counting(trainer, key):
        block = trainer.policy.model.transformer.h[0].mlp  # inside a checkpointed layer
        forward = block.forward

        def wrapped(*a, **k):
            calls[key] += in_backward[0]
            return forward(*a, **k)
        block.forward = wrapped

    counting(plain, "plain")
    counting(ckpt, "ckpt")
    torch.Tensor.backward = flagged
    try:
        plain.step()
        ckpt.step()
    finally:
        torch.Tensor.backward = backward
    assert calls["plain"] == 0 and calls["ckpt"] > 0  # the update's forwards ran again in the backward pass
    for (name, a), b in zip(plain.policy.named_parameters(), ckpt.policy.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    frozen = PPOTrainer(PPOConfig(**{**TINY, "runs": str(tmp_path / "c"), "train_layers": 1}))
    before = {k: v.clone() for k, v in frozen.policy.state_dict().items()}
    frozen.step()
    moved = {k for k, v in frozen.policy.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith(("model.transformer.h.1.", "model.transformer.ln_f.", "value_head."))
                         for k in moved), sorted(moved)


def test_sft_gradient_checkpointing_trains_the_same_model():
    from agents.sft import SFTConfig, fit

    base = dict(env="TextCount-v0", model="tiny", epochs=1, max_steps=3, batch_size=4, lr=1e-3, limit=12,
                eval_limit=4, device="cpu")
    plain = fit(SFTConfig(**base)).metrics["final_val_loss"]
    ckpt = fit(SFTConfig(**base, gradient_checkpointing=True)).metrics["final_val_loss"]
    assert ckpt == pytest.approx(plain, rel=1e-4)


def test_a_busy_cpu_is_named_before_torch_threads_contend(monkeypatch):
    """Another process on one of two cores made default-threaded rollouts 10-40x slower: a run on
    a busy CPU says so once, with the fix; a free CPU or a set OMP_NUM_THREADS says nothing."""
    import os

    import torch

    from textenv import devices

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.0, 1.0))
    assert "OMP_NUM_THREADS=1" in devices.cpu_contention() and "load 1.9 on 2 cores" in devices.cpu_contention()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert devices.cpu_contention() is None
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 1.0, 1.0))
    assert devices.cpu_contention() is None


def test_demo_forwards_under_the_asked_precision(monkeypatch, capsys):
    """``python -m textenv --precision bf16`` runs its forwards under bf16 autocast (and fp32 without):
    the flag comes from the shared run context, so it must do what it says in the demo too."""
    import textenv.__main__ as demo

    seen = []
    real = demo.forward_with_cache

    def spy(model, inputs, past):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(model, inputs, past)

    monkeypatch.setattr(demo, "forward_with_cache", spy)
    for precision, expected in (("bf16", True), ("fp32", False)):
        seen.clear()
        demo.main(["--env", "TextCount-v0", "--model", "tiny", "--episodes", "1", "--precision", precision,
                   "--device", "cpu", "--max-new-tokens", "4"])
        assert seen and set(seen) == {expected}, precision
    assert "mean reward over 1 episodes" in capsys.readouterr().out
