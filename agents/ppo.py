"""PPO for language models on textenv, with a KL penalty to a frozen reference (the RLHF recipe).

Read top to bottom (:meth:`PPOTrainer.step`): collect one :class:`agents.rollout.Rollout` (the
Gymnasium vector env + the KV-cached policy; whole-batch tensors that the loss reads as they are) ->
score it (KL to the reference, task scores) -> advantages (per-token rewards: task reward at the
last token, ``-kl_coef * (logp - logp_ref)`` on every token; GAE with a value head, or critic-free
GRPO / RLOO group baselines) -> clipped PPO update over minibatches and epochs -> KL controller ->
logging and atomic checkpoints. The config and the named
presets are in :mod:`agents.ppo_config`. Optional NLPO action masking (``--mask-top-k``): tokens are
sampled and scored only among a frozen masking model's top-k next tokens (:mod:`agents.masking`).
``--loss-type`` picks how the policy loss is averaged (token, sequence, Dr. GRPO); ``--length-band``
penalises replies that leave a band around the starting policy's mean length. Each iteration also
logs whether it had anything to learn from (:mod:`agents.learning_signal`: ``signal/`` keys), warns
after a stretch without, and stops a run whose reward never varied; ``--difficulty-schedule`` raises
a reasoning task's level as the policy learns.

    python -m agents.ppo --preset tiny                                 # tiny model, TextCount-v0
    python -m agents.ppo --env TextSentiment-v0 --preset quick          # the default model
    python -m agents.ppo --help
    accelerate launch --num_processes 2 -m agents.ppo --preset tiny   # data parallel, same config

Every iteration draws its prompts, its env seed and its sampling generator from ``(seed,
iteration)``, and the model runs without dropout, so ``--resume`` from a checkpoint reproduces the
uninterrupted run exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium.vector import VectorEnv

import textenv  # noqa: F401 - registers the env ids
from agents.advantages import (
    AdaptiveKLController,
    FixedKLController,
    UpdateBatch,
    length_penalty,
    ppo_loss,
    update_batch,
)
from agents.config import run_dir, save_config
from agents.distributed import Dist, parameter_checksum
from agents.learning_signal import DifficultySchedule, SignalMonitor, SignalStats, signal_stats
from agents.masking import TopKMasker
from agents.policy import EpisodeBatch, LMActorCritic, Sampling
from agents.ppo_config import PRESETS, PPOConfig, resume_config
from agents.rollout import Rollout, collect_rollout
from agents.run_files import load_optimizer, optimizer_tensors, plot_rewards
from agents.seeds import heldout_row_seed, iteration_seed, update_seed
from agents.tracking import Tracker, library_progress
from textenv.cli import RunFailed, cli, parse_config
from textenv.devices import autocast, resolve_device
from textenv.io import FolderLock, atomic_dir, refuse_symlinks, remove_stale, require_complete
from textenv.models import checkpointed, freeze_below
from textenv.rewards import RewardError
from textenv.task_factories import difficulty_levels
from textenv.vector import policy_envs

__all__ = ["PPOConfig", "PPOTrainer", "PRESETS", "main"]

logger = logging.getLogger(__name__)


def _shaped_returns(rollout: Rollout, cfg: PPOConfig, dist: Dist | None = None) -> torch.Tensor:
    """Each episode's return as PPO optimises it: scaled, clipped, whitened (``whiten_scores``: with GAE at
    lam < 1 and a value head still near 0, an episode's early tokens get ``lam**k`` of its reward,
    so a positive offset such as a reward model's makes short episodes look better), then the
    missing-EOS penalty."""
    scores = rollout.returns.float() * cfg.reward_scale
    if cfg.reward_clip is not None:
        scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
    if cfg.whiten_scores:
        dist = dist or Dist()
        mean = dist.mean(float(scores.mean()))
        var = dist.mean(float(((scores - mean) ** 2).mean()))
        scores = (scores - mean) / math.sqrt(var + 1e-8)
    if cfg.missing_eos_penalty:
        scores = scores - cfg.missing_eos_penalty * torch.from_numpy(~rollout.ended_with_eos).float()
    return scores


def _rewards(cfg: PPOConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``reward=`` keyword of the train envs and of the held-out envs: the held-out envs keep the
    task's own reward (or ``--reward``) when training on ``--reward-model``."""
    task_reward = {"reward": cfg.reward} if cfg.reward else {}
    if not cfg.reward_model:
        return task_reward, task_reward
    from textenv.rewards import resolve

    return {"reward": resolve("classifier", path=cfg.reward_model)}, task_reward


class Scored(NamedTuple):
    """One rollout scored for the update, on the trainer's device: its KL to the reference and its
    task scores (``(N, A)`` over the agent's tokens, ``(N,)`` per episode)."""

    mask: torch.Tensor  # (N, A) 1 where an action exists
    kl: torch.Tensor  # (N, A) k1 = logp - logp_ref per action: the penalty
    kl_k3: torch.Tensor  # (N, A) k3 >= 0, for logging
    lengths: torch.Tensor  # (N,) actions per episode
    episode_rewards: torch.Tensor  # (N,) shaped returns less the length penalty
    length_penalty: torch.Tensor  # (N,)
    allowed: torch.Tensor | None  # (N, G, V) NLPO: the masking model's allowed tokens at every position


class PPOTrainer:
    """Owns the loop; the policy owns the networks."""

    def __init__(self, config: PPOConfig) -> None:
        cfg = self.cfg = config
        self.device = resolve_device(cfg.device)
        self.train_reward, task_reward = _rewards(cfg)
        self.schedule = None  # --difficulty-schedule: the train env's level
        if cfg.difficulty_schedule is not None:
            self.schedule = DifficultySchedule(cfg.difficulty_schedule, difficulty_levels(cfg.env), cfg.signal_patience)
        self.envs = self._train_envs()
        self.setup = self.envs.unwrapped.setup
        self.monitor = SignalMonitor(cfg.signal_patience, cfg.max_zero_std_groups, cfg.advantage != "gae",
                                     self.setup.max_new_tokens)
        self.eval_envs = None
        if cfg.eval_every:
            # The same task and budgets on held-out prompts, scored by the task's own reward even
            # when training on a reward model: a hacked reward model shows there, not in its score.
            self.eval_envs = policy_envs(cfg.env, cfg.model, min(cfg.eval_prompts, 32), split=cfg.eval_split,
                                         tokenizer=self.setup.tokenizer, max_new_tokens=cfg.max_new_tokens,
                                         **task_reward)
        self._build_models()
        self.kl = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.kl_target
                   else FixedKLController(cfg.kl_coef))
        self.iteration = 0
        self.failures = 0
        self.updates = 0  # iterations whose update was applied, over the whole run (resumes included)
        self.last_skip = ""
        self.best_eval, self.best_iteration = -math.inf, -1  # --keep-best: the best held-out eval so far
        self.ref_length: float | None = None  # --length-band's L0, measured on the first rollout
        self.dist = Dist()  # under `accelerate launch`: one prompt shard per process, averaged gradients
        self.lock: FolderLock | None = None  # one writer per run folder, held until train() returns
        self.dir = self._open_run_folder()
        self.tracker = None
        if self.dist.is_main:
            save_config(cfg, self.dir / "config.json")  # atomic: a kill leaves the old one
            self.tracker = Tracker(self.dir, tensorboard=cfg.tensorboard,
                                   resume_step=self.iteration if cfg.resume else None)

    def _build_models(self) -> None:
        """The policy (seeded by ``cfg.seed``), its frozen reference (none with LoRA: the policy with
        its adapter disabled is the reference), the NLPO masking model and the optimizer."""
        cfg = self.cfg
        sampling = Sampling(cfg.temperature, cfg.top_k, cfg.top_p)
        lora = {"r": cfg.lora_r, "lora_alpha": 2 * cfg.lora_r, "target_modules": "all-linear"} if cfg.lora_r else None
        torch.manual_seed(cfg.seed)
        self.policy = LMActorCritic.from_pretrained(cfg.model, tokenizer=self.setup.tokenizer,
                                                    sampling=sampling, lora=lora, seed=cfg.seed).to(self.device)
        if cfg.train_layers >= 0:
            freeze_below(self.policy.model, cfg.train_layers)
        self.reference = None
        if not self.policy.is_lora:
            self.reference = copy.deepcopy(self.policy.model).eval().requires_grad_(False)
        self.masker = None
        if cfg.mask_top_k:
            # the masking model starts as the starting policy: while it is never refreshed, the
            # frozen reference already is that model, so share it instead of a second copy
            share = self.reference is not None and not cfg.mask_update_every
            self.masker = TopKMasker(self.reference if share else self.policy.model, self.setup.tokenizer,
                                     cfg.mask_top_k, cfg.mask_top_p, share=share)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)

    def _open_run_folder(self) -> Path:
        """The run folder, locked by the main process until :meth:`close`: ``--resume``'s, with the
        trainer restored from its checkpoint, or a new one (other processes write nothing)."""
        cfg = self.cfg
        if not cfg.resume:
            if not self.dist.is_main:
                return Path(cfg.runs)
            folder = run_dir(cfg.runs, cfg.env, cfg.exp_name, cfg.seed)
            self.lock = FolderLock(folder, "run folder")
            return folder
        folder = refuse_symlinks(Path(cfg.resume))  # nothing written through a link out of the folder
        if self.dist.is_main:
            self.lock = FolderLock(folder, "--resume run folder")
        try:
            for name in ("checkpoint", "final", "best"):  # what killed writes left: complete copies are restored
                remove_stale(folder / name)
            self._load_checkpoint(folder / "checkpoint")
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        return folder

    def _train_envs(self, tokenizer: Any = None) -> VectorEnv:
        """The train split's vector env; with ``--difficulty-schedule``, at the schedule's level (the
        held-out env stays on the env's own level, so its numbers compare with runs without one)."""
        level = {} if self.schedule is None else {"difficulty": self.schedule.level}
        return policy_envs(self.cfg.env, self.cfg.model, self.cfg.num_envs, tokenizer=tokenizer,
                           max_new_tokens=self.cfg.max_new_tokens, **self.train_reward, **level)

    def _follow_difficulty(self) -> None:
        """Rebuild the train env at the schedule's new level, on the policy's tokenizer. Its prompts
        are the level's own seeded train split, so a resumed run draws the same ones."""
        self.envs.close()
        self.envs = self._train_envs(self.setup.tokenizer)
        self.setup = self.envs.unwrapped.setup

    # -- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, directory: Path | None = None) -> Path:
        from safetensors.torch import save_file

        if not all(torch.isfinite(p).all() for p in self.policy.parameters()):
            raise RuntimeError("refusing to write a checkpoint: the policy has non-finite parameters")
        target = directory or self.dir / "checkpoint"
        if not self.dist.is_main:  # the weights are identical everywhere: one process writes
            return target
        with atomic_dir(target) as tmp:
            self.policy.save_pretrained(tmp)
            tensors, meta = optimizer_tensors(self.optimizer)
            save_file(tensors, tmp / "optimizer.safetensors")
            state = {"iteration": self.iteration, "kl_coef": self.kl.value, "failures": self.failures,
                     "updates": self.updates, "best_eval": self.best_eval, "best_iteration": self.best_iteration,
                     "ref_length": self.ref_length, "signal": self.monitor.state_dict(),
                     "difficulty": None if self.schedule is None else self.schedule.state_dict(),
                     "optimizer": meta, "config": dataclasses.asdict(self.cfg)}
            if self.masker is not None and self.cfg.mask_update_every:  # it is no longer the starting policy
                self.masker.save(tmp / "mask_model.safetensors")
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2, default=str))
        return target

    def _load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file

        require_complete(path, "checkpoint")
        loaded = LMActorCritic.from_pretrained(str(path), tokenizer=self.setup.tokenizer)
        self.policy.load_state_dict(loaded.state_dict())
        state = json.loads((path / "trainer_state.json").read_text())
        load_optimizer(self.optimizer, load_file(path / "optimizer.safetensors"), state["optimizer"])
        self.iteration, self.kl.value, self.failures = state["iteration"], state["kl_coef"], state["failures"]
        self.updates = state.get("updates", self.iteration - self.failures)  # older checkpoints: a lower bound
        self.best_eval, self.best_iteration = state.get("best_eval", -math.inf), state.get("best_iteration", -1)
        self.ref_length = state.get("ref_length")
        self.monitor.load_state_dict(state.get("signal"))
        if self.schedule is not None and state.get("difficulty") is not None:
            self.schedule.load_state_dict(state["difficulty"])
            self._follow_difficulty()
        if self.masker is not None and self.cfg.mask_update_every:
            self.masker.load(path / "mask_model.safetensors")
        logger.info("resumed from %s at iteration %d", path, self.iteration)

    # -- one iteration ---------------------------------------------------------------------

    def _prompt_indices(self, it: int) -> list[int]:
        key = [self.cfg.seed, it] if self.dist.world == 1 else [self.cfg.seed, it, self.dist.rank]
        rng = np.random.default_rng(key)
        prompts = rng.choice(len(self.setup.examples), size=self.cfg.prompts_per_iter,
                             replace=len(self.setup.examples) < self.cfg.prompts_per_iter)
        return [int(i) for i in np.repeat(prompts, self.cfg.samples_per_prompt)]

    def _autocast(self):
        return autocast(self.device, self.cfg.precision)

    def collect(self, it: int) -> tuple[Rollout, float]:
        """Iteration ``it``'s episodes, and the seconds they took."""
        seed = iteration_seed(self.cfg.seed, it, self.dist.rank)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        start = time.perf_counter()
        with self._autocast():
            rollout = collect_rollout(self.envs, self.policy, self._prompt_indices(it), seed=seed, generator=gen,
                                      masker=self.masker)
        return rollout, time.perf_counter() - start

    @torch.no_grad()
    def evaluate_heldout(self, n_samples: int = 4) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Sample the fixed held-out prompts (``eval_prompts`` of ``eval_split``) with the current
        policy: mean task reward (the task's own or ``--reward``, never the reward model),
        per-episode KL to the reference (k1, summed over tokens) and length, plus ``n_samples`` texts.
        Each row draws from its own seeded stream, so two evaluations differ only because the policy
        did: reward hacking shows while it happens."""
        envs = self.eval_envs
        if envs is None:
            raise RuntimeError("evaluate_heldout needs eval_every > 0 (the held-out env is built then)")
        setup = envs.unwrapped.setup
        indices = list(range(min(self.cfg.eval_prompts, len(setup.examples))))
        b = envs.unwrapped.num_envs
        parts = []
        with self._autocast():
            for start in range(0, len(indices), b):
                chunk = indices[start:start + b]
                parts.append(collect_rollout(envs, self.policy, chunk, seed=self.cfg.seed, masker=self.masker,
                                             row_seeds=[heldout_row_seed(self.cfg.seed, i) for i in chunk]))
            rollout = Rollout.cat(parts, self.policy.pad_token_id)  # one reference forward over every prompt
            ref_logp = self.policy.reference_logprobs(rollout.batch, self.reference).float().cpu()
        lengths = rollout.lengths.tolist()
        # per episode, summed as Python floats (not a float32 tensor sum): the eval's KL as it always was
        kl = [float(sum(rollout.logprobs[i, :n].tolist()) - ref_logp[i, :n].sum()) for i, n in enumerate(lengths)]
        metrics = {
            "eval/reward_mean": float(np.mean(rollout.returns.numpy())),
            "eval/kl": float(np.mean(kl)),
            "eval/episode_length": float(np.mean(lengths)),
            "eval/eos_rate": float(np.mean(rollout.ended_with_eos)),
        }
        if self.ref_length is not None:  # --length-band: the held-out length against the band's L0
            metrics["eval/length_ratio"] = metrics["eval/episode_length"] / self.ref_length
        samples = [{"index": rollout.index[i], "prompt": rollout.infos[i].get("prompt", ""),
                    "text": rollout.infos[i].get("text", ""), "reward": float(rollout.returns[i]), "kl": kl[i]}
                   for i in range(min(n_samples, len(rollout)))]
        return metrics, samples

    def step(self) -> dict[str, float]:
        """One iteration: collect -> score -> advantages -> update -> log. Returns its metrics
        (``failures/skipped`` = 1 when it was skipped); a skipped iteration counts as done too."""
        it = self.iteration + 1
        metrics = self._iterate(it)
        self.iteration = it
        return metrics

    def _iterate(self, it: int) -> dict[str, float]:
        """Iteration ``it``'s work and metrics (:meth:`step`)."""
        why = None
        try:
            rollout, rollout_secs = self.collect(it)
            if not torch.isfinite(rollout.returns).all():
                why = "non-finite task reward"
        except RewardError as exc:
            why = f"reward failed: {exc}"
        if self.dist.any(why is not None):  # every process skips together
            return self._skip(it, why or "a reward failed on another process")
        signal = signal_stats(rollout.returns.numpy(), rollout.ended_with_eos, self.cfg.samples_per_prompt, self.dist)
        rose, difficulty = self._advance_difficulty(signal)  # the next iteration's level
        self.monitor.observe(it, signal, task_changed=rose)  # warns after a stretch without signal; may stop
        scored = self._score_rollout(rollout)
        if not torch.isfinite(scored.episode_rewards).all():
            return self._skip(it, "non-finite task reward")
        targets = self._advantages(rollout, scored)
        stats = self._update(rollout.batch, targets, it, scored.allowed)
        if stats is None:
            return self._skip(it, "non-finite loss")
        self._after_update(it, scored, len(rollout))
        return {**self._metrics(rollout, scored, stats, rollout_secs), **signal.metrics(), **difficulty}

    def _advance_difficulty(self, signal: SignalStats) -> tuple[bool, dict[str, float]]:
        """``--difficulty-schedule``: whether the train env moved up a level for the next iteration,
        and the metrics of this one (the level it trained at, its accuracy)."""
        if self.schedule is None:
            return False, {}
        metrics = {"signal/difficulty": float(self.schedule.level), "signal/accuracy": signal.accuracy}
        rose = self.schedule.observe(signal.accuracy)
        if rose:
            self._follow_difficulty()
        return rose, metrics

    def _score_rollout(self, rollout: Rollout) -> Scored:
        """The rollout's KL to the reference (per action) and its task scores; the first rollout
        also fixes ``--length-band``'s L0 (``ref_length``)."""
        cfg = self.cfg
        mask = rollout.mask.float().to(self.device)  # (N, A): the agent's tokens only
        old_logp = rollout.logprobs.to(self.device)
        allowed = None
        with self._autocast():
            ref_logp = self.policy.reference_logprobs(rollout.batch, self.reference).float()
            if self.masker is not None:  # the same masking model as in the rollout: ratios start at 1
                allowed = self.masker.allowed_for(rollout.batch)
        kl = (old_logp - ref_logp) * mask  # k1 per token: the penalty
        kl_k3 = ((ref_logp - old_logp).exp() - 1 - (ref_logp - old_logp)) * mask  # k3: >= 0, for logging
        lengths = mask.sum(1).long()
        if cfg.length_band is not None and self.ref_length is None:  # before any update: L0 (>= 1, a divisor)
            self.ref_length = max(self.dist.mean(float(lengths.float().mean())), 1.0)
        rewards, length_pen = self._episode_rewards(rollout, lengths)
        return Scored(mask, kl, kl_k3, lengths, rewards, length_pen, allowed)

    def _advantages(self, rollout: Rollout, scored: Scored) -> UpdateBatch:
        """Advantages and returns (:func:`agents.advantages.update_batch`) beside what the rollout recorded."""
        cfg = self.cfg
        # per-turn credit: the env's rewards, scaled as the returns are, at the actions they came with
        turns = rollout.rewards.to(self.device) * cfg.reward_scale if cfg.credit == "turn" else None
        return update_batch(scored.episode_rewards, scored.kl, scored.mask, rollout.logprobs.to(self.device),
                             rollout.values.to(self.device), self.kl.value, cfg.advantage, cfg.samples_per_prompt,
                             cfg.gamma, cfg.lam, cfg.whiten_advantages, scale_group=cfg.loss_type != "dr_grpo",
                             action_rewards=turns)

    def _after_update(self, it: int, scored: Scored, n_episodes: int) -> None:
        """What a successful update moves on: the NLPO masking model, the failure count, the KL coefficient."""
        if self.masker is not None and self.cfg.mask_update_every and it % self.cfg.mask_update_every == 0:
            self.masker.refresh(self.policy.model)
        self.failures = 0
        self.updates += 1
        self.kl.update(self.dist.mean(float(scored.kl.sum(1).mean())), n_episodes * self.dist.world)

    def _metrics(self, rollout: Rollout, scored: Scored, stats: dict[str, float],
                 rollout_secs: float) -> dict[str, float]:
        """An applied iteration's metrics (cleanrl's groups: ``charts/``, ``objective/``, ``losses/``,
        ``rewards/``)."""
        returns = rollout.returns.numpy()
        metrics = {
            "charts/reward_mean": self.dist.mean(float(np.mean(returns))),
            "charts/reward_std": float(np.std(returns)),
            "charts/episode_length": float(scored.lengths.float().mean()),
            "charts/eos_rate": float(np.mean(rollout.ended_with_eos)),
            "charts/tokens_per_s": int(scored.mask.sum()) / max(rollout_secs, 1e-9),
            "objective/kl": self.dist.mean(float(scored.kl.sum(1).mean())),
            "objective/kl_k3": float(scored.kl_k3.sum(1).mean()),
            "objective/kl_coef": float(self.kl.value),
            "failures/skipped": 0.0,
            **stats,
        }
        if self.cfg.length_band is not None:
            metrics["charts/length_penalty_mean"] = self.dist.mean(float(scored.length_penalty.mean()))
            metrics["charts/ref_length"] = float(self.ref_length)
        parts: dict[str, list[float]] = {}
        for info in rollout.infos:
            for k, v in info.get("reward_parts", {}).items():
                parts.setdefault(k, []).append(float(v))
        metrics.update({f"rewards/{k}/mean": float(np.mean(v)) for k, v in parts.items()})
        return metrics

    def _episode_rewards(self, rollout: Rollout, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each episode's reward in the update: :func:`_shaped_returns` minus the ``--length-band``
        penalty on its length (actions, EOS included, as ``mask.sum(1)`` counts them) around
        ``ref_length``; returns ``(rewards, penalties)`` on the trainer's device."""
        shaped = _shaped_returns(rollout, self.cfg, self.dist).to(self.device)
        penalty = torch.zeros_like(shaped)
        if self.cfg.length_band is not None:
            if self.ref_length is None:
                raise RuntimeError("length_band needs ref_length, measured on the first rollout")
            lo, hi = self.cfg.length_band
            penalty = length_penalty(lengths.to(self.device), self.ref_length, (lo, hi), self.cfg.length_coef)
        return shaped - penalty, penalty

    def _skip(self, it: int, why: str) -> dict[str, float]:
        """Count iteration ``it`` as failed (nothing of it applied), the metrics that say so; after
        ``max_failures`` in a row the run stops."""
        self.failures += 1
        self.last_skip = why
        logger.warning("iteration %d skipped (%s); %d consecutive failure(s)", it, why, self.failures)
        if self.failures >= self.cfg.max_failures:
            raise RunFailed(f"PPO stopped: {self.failures} consecutive iterations failed, last: {why}")
        return {"failures/skipped": 1.0}

    def _update(self, batch: EpisodeBatch, targets: UpdateBatch, it: int,
                allowed: torch.Tensor | None = None) -> dict[str, float] | None:
        """Epochs of minibatch steps on :func:`agents.advantages.ppo_loss`; ``None`` when a loss or a
        gradient is not finite (that minibatch is not applied)."""
        cfg = self.cfg
        n = batch.input_ids.shape[0]
        gen = torch.Generator().manual_seed(update_seed(cfg.seed, it))
        mb = min(cfg.minibatch_size, n)
        micro = max(1, mb // cfg.grad_accum)
        log: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "ent", "approx_kl", "clipfrac")}
        for _epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=gen)
            epoch_kl = []
            for start in range(0, n, mb):
                self.optimizer.zero_grad(set_to_none=True)
                idx_mb = order[start:start + mb]
                for m0 in range(0, len(idx_mb), micro):
                    idx = idx_mb[m0:m0 + micro]
                    sub = batch.rows(idx)
                    with self._autocast(), checkpointed(self.policy.model, cfg.gradient_checkpointing):
                        scores = self.policy.evaluate(sub, with_values=cfg.advantage == "gae",
                                                      allowed=None if allowed is None else allowed[idx],
                                                      entropy_grad=cfg.ent_coef != 0)
                    loss, stats = ppo_loss(scores.logprobs, scores.entropy, scores.values, targets.rows(idx), cfg,
                                           max_tokens=self.setup.max_new_tokens)
                    if self.dist.any(not torch.isfinite(loss)):  # nothing of this minibatch is applied
                        self.optimizer.zero_grad(set_to_none=True)
                        return None
                    (loss * len(idx) / len(idx_mb)).backward()
                    for k, val in stats.items():
                        log[k].append(float(val.detach()))
                    epoch_kl.append(float(stats["approx_kl"]))
                trainable = [p for p in self.policy.parameters() if p.requires_grad]
                self.dist.average_gradients(trainable)
                norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                # The NaN guard: a non-finite gradient never reaches the weights or Adam's moments,
                # so no per-iteration copy of the weights and optimizer state is needed to undo it
                # (minibatches stepped before it stay applied; the iteration counts as skipped).
                if self.dist.any(not torch.isfinite(norm)):
                    self.optimizer.zero_grad(set_to_none=True)
                    return None
                self.optimizer.step()
            if cfg.target_approx_kl is not None and self.dist.mean(float(np.mean(epoch_kl))) > cfg.target_approx_kl:
                break
        real = targets.mask > 0
        y, v = targets.returns[real], targets.old_values[real]
        var_y = float(y.var()) if y.numel() > 1 else float("nan")
        explained = float("nan") if cfg.advantage != "gae" or not var_y > 0 else 1 - float((y - v).var()) / var_y
        return {
            "losses/policy_loss": float(np.mean(log["pg"])),
            "losses/value_loss": float(np.mean(log["vf"])),
            "losses/entropy": float(np.mean(log["ent"])),
            "losses/approx_kl": float(np.mean(log["approx_kl"])),
            "losses/clipfrac": float(np.mean(log["clipfrac"])),
            "losses/explained_variance": explained,
        }

    # -- the loop --------------------------------------------------------------------------

    def _keep_if_best(self, held: dict[str, float]) -> None:
        """``--keep-best``: write ``best/`` when this held-out eval beats every earlier one. Each eval
        draws the same seeded streams on the same prompts, so two evals differ only by the policy.
        The starting policy competes too: a run that never improves on its held-out prompts keeps
        the weights it started from, rather than the last point of a drift."""
        if not self.cfg.keep_best or not held["eval/reward_mean"] > self.best_eval:
            return
        self.best_eval, self.best_iteration = held["eval/reward_mean"], self.iteration
        self.save_checkpoint(self.dir / "best")
        logger.info("iteration %d: held-out reward %.4f, the best so far: saved best/", self.iteration,
                    self.best_eval)

    def train(self) -> list[dict[str, float]]:
        """Run to ``cfg.iterations`` (from where a resumed run stopped); the per-iteration metrics.
        The run folder's lock is released when it returns: the run is then over."""
        try:
            with library_progress(self.cfg.progress):
                return self._train()
        finally:
            self.close()

    def close(self) -> None:
        """Release the run folder (:meth:`train` does when it returns) for another trainer to resume."""
        if self.lock is not None:
            self.lock.release()

    def _train(self) -> list[dict[str, float]]:
        from tqdm.auto import tqdm

        cfg = self.cfg
        history = []
        bar = tqdm(total=cfg.iterations, initial=self.iteration, disable=not cfg.progress, desc=cfg.env)
        try:
            if cfg.eval_every and self.iteration == 0:  # the starting point, for the curve to start from
                held, samples = self.evaluate_heldout()
                self._keep_if_best(held)
                if self.tracker is not None:
                    self.tracker.log(0, held)
                    self.tracker.log_samples(0, samples)
            while self.iteration < cfg.iterations:
                metrics = self.step()
                if cfg.eval_every and (self.iteration % cfg.eval_every == 0 or self.iteration == cfg.iterations):
                    held, samples = self.evaluate_heldout()
                    self._keep_if_best(held)
                    metrics = {**metrics, **held}
                    if self.tracker is not None:
                        self.tracker.log_samples(self.iteration, samples)
                if self.tracker is not None:
                    self.tracker.log(self.iteration, metrics)
                history.append(metrics)
                bar.update(1)
                if "charts/reward_mean" in metrics:
                    bar.set_postfix(reward=f"{metrics['charts/reward_mean']:.3f}", kl=f"{metrics['objective/kl']:.2f}")
                if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations:
                    self.save_checkpoint()
        finally:
            bar.close()
            if self.tracker is not None:
                self.tracker.close()
        if self.updates == 0:  # final/ would be the starting weights, read downstream as a trained policy
            raise RunFailed(f"PPO learned nothing: all {self.iteration} iterations were skipped (last: "
                            f"{self.last_skip}); no final/ written")
        self.save_checkpoint(self.dir / "final")
        if self.dist.world > 1:
            logger.info("process %d/%d parameter checksum %s", self.dist.rank, self.dist.world,
                        parameter_checksum(self.policy))
            self.dist.barrier()
        return history


def main(argv: list[str] | None = None) -> PPOTrainer:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = parse_config(PPOConfig, argv, PRESETS)
    if cfg.resume:
        cfg = resume_config(cfg, sys.argv[1:] if argv is None else argv)
    trainer = PPOTrainer(cfg)
    start = time.perf_counter()
    history = trainer.train()
    rewards = [m["charts/reward_mean"] for m in history if "charts/reward_mean" in m]
    if not trainer.dist.is_main:
        return trainer
    png = plot_rewards(trainer.dir)
    if rewards:
        logger.info("reward %.4f -> %.4f over %d iterations in %.0f s; run: %s; curve: %s",
                    rewards[0], rewards[-1], len(rewards), time.perf_counter() - start, trainer.dir, png)
    return trainer


if __name__ == "__main__":
    cli(main)
