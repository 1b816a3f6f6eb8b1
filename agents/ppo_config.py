"""What a PPO run is: :class:`PPOConfig` (every field a ``--flag`` of ``python -m agents.ppo``), the
named budgets (:data:`PRESETS`, ``--preset``) with the measurements that chose them, and
:func:`resume_config`, the config a resumed run continues with.

Kept apart from the trainer (:mod:`agents.ppo`) so a preset's numbers and their reasons read on
their own; :mod:`agents.ppo` re-exports them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agents.advantages import LOSS_TYPES
from textenv.cli import arg, given_fields
from textenv.context import EnvContext
from textenv.task_factories import difficulty_levels
from textenv.trust import refuse_config_code

__all__ = ["PPOConfig", "PRESETS", "resume_config"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PPOConfig(EnvContext):
    """PPO with a KL-controlled reference for a causal LM on a textenv task (its train split), starting
    from ``model`` (the default model, 'tiny', an SFT or policy directory)."""

    exp_name: str = arg("ppo", "run name, part of the run directory")
    reward: str | None = arg(None, "reward name or 'pkg.mod:fn' (imports and runs that module) instead of the "
                                   "task's default")
    reward_model: str | None = arg(None, "reward-model checkpoint directory: its score is the reward")
    iterations: int = arg(20, "number of rollout+update iterations")
    prompts_per_iter: int = arg(8, "distinct prompts per iteration")
    samples_per_prompt: int = arg(1, "samples per prompt (>= 2 for grpo/rloo); num_envs = prompts x samples")
    max_new_tokens: int | None = arg(None, "token budget per episode (default: the task's)")
    temperature: float = arg(1.0, "sampling temperature (also used to score, so ratios are unbiased)")
    top_k: int = arg(0, "top-k sampling (0: off)")
    top_p: float = arg(1.0, "nucleus sampling mass (1: off)")
    mask_top_k: int = arg(0, "NLPO action mask: only a frozen masking model's top-k next tokens may be chosen (0: off)")
    mask_top_p: float = arg(1.0, "NLPO: keep the smallest prefix of the masking model's top-k holding this mass")
    mask_update_every: int = arg(0, "NLPO: copy the policy into the masking model every N iterations "
                                    "(0: it stays the starting policy)")
    advantage: Literal["gae", "grpo", "rloo"] = arg("gae", "advantage estimator: value-head GAE or a group baseline")
    credit: Literal["episode", "turn"] = arg(
        "episode", "where GAE puts the env's rewards: 'episode' (the return at the episode's last action) or 'turn' "
                   "(each reward at the action it came with: a multi-turn episode's turn rewards at each turn's last "
                   "action, so an early reply is credited with its own turn, not the later ones); the shaping "
                   "(scale aside) stays at the last action, so an episode's total reward is the same either way; "
                   "needs --advantage gae")
    loss_type: Literal["token", "sequence", "dr_grpo"] = arg(
        "token", "how the policy loss and entropy bonus are averaged over a minibatch: 'token' (sum over real "
                 "tokens / their number: every token weighs the same; TRL's 'bnpo', DAPO's), 'sequence' (mean over "
                 "each episode's tokens, then over episodes: the GRPO paper, TRL's 'grpo'; a short wrong answer "
                 "is pushed down harder per token than a long one), 'dr_grpo' (sum / (episodes x max_new_tokens), "
                 "a constant, and with --advantage grpo no division by the group's std: Dr. GRPO, Liu et al. "
                 "2025, TRL's 'dr_grpo'); the value loss stays a token mean")
    gamma: float = arg(1.0, "discount over tokens")
    lam: float = arg(0.95, "GAE lambda")
    whiten_advantages: bool = arg(True, "normalise advantages over the batch")
    lr: float = arg(1e-5, "Adam learning rate")
    epochs: int = arg(4, "PPO epochs per iteration")
    minibatch_size: int = arg(8, "episodes per minibatch")
    grad_accum: int = arg(1, "micro-batches per minibatch (gradient accumulation)")
    max_grad_norm: float = arg(1.0, "gradient clipping norm")
    clip_range: float = arg(0.2, "PPO policy ratio clip")
    clip_range_value: float = arg(0.2, "value clip around the rollout values")
    vf_coef: float = arg(0.1, "value loss weight")
    ent_coef: float = arg(0.0, "entropy bonus weight")
    target_approx_kl: float | None = arg(None, "stop an epoch early when approx KL(old||new) exceeds this")
    kl_coef: float = arg(0.05, "initial coefficient of the per-token KL penalty to the reference")
    kl_target: float | None = arg(6.0, "adaptive KL target per episode (None: fixed kl_coef)")
    kl_horizon: int = arg(10000, "adaptive KL horizon in episodes")
    reward_scale: float = arg(1.0, "multiply task rewards by this")
    reward_clip: float | None = arg(None, "clip scaled task rewards to [-c, c]")
    whiten_scores: bool = arg(False, "whiten each iteration's task rewards (zero mean, unit std over all processes) "
                              "before the KL penalty: a reward model's offset otherwise favours short episodes")
    missing_eos_penalty: float | None = arg(None, "subtract this from the reward of an episode that hit the token "
                                                  "budget instead of ending with EOS (TRL's name): a reward that "
                                                  "grows with length is then not won by never stopping")
    length_band: tuple[float, float] | None = arg(
        None, "LO HI: subtract length_coef * max(0, LO*L0 - L, L - HI*L0) / L0 from the task reward (after "
              "scaling, clipping, whitening) of an episode of L generated tokens (EOS included), L0 the mean of the "
              "first iteration's rollout (the starting policy's, kept in checkpoints): replies may not win the "
              "reward by shrinking or growing beyond the band (None: off)")
    length_coef: float = arg(1.0, "weight of the --length-band penalty, per L0 of distance outside the band")
    lora_r: int = arg(0, "LoRA rank (0: train all weights; >0: the reference is the base, adapter off)")
    train_layers: int = arg(-1, "train only the top N transformer blocks + final norm + value head (-1: all); "
                                "the backward pass then stops early: the CPU presets' speed and memory lever")
    gradient_checkpointing: bool = arg(False, "recompute activations in the backward pass (less memory, slower)")
    eval_every: int = arg(0, "every N iterations, sample the held-out prompts: eval/reward_mean (the task's "
                             "own reward, also with --reward-model), eval/kl, eval/episode_length and a few "
                             "sample texts (0: off)")
    eval_prompts: int = arg(32, "held-out prompts (the first N of eval_split) for --eval-every")
    eval_split: str = arg("validation", "split of the held-out prompts for --eval-every")
    keep_best: bool = arg(False, "with --eval-every: write best/ whenever eval/reward_mean beats every earlier "
                                 "held-out eval, the starting policy's included (SB3's EvalCallback); "
                                 "agents.pipeline then takes best/ instead of final/")
    checkpoint_every: int = arg(5, "write a checkpoint every N iterations (and at the end)")
    runs: str = arg("runs", "root directory of runs")
    resume: str | None = arg(None, "run directory to continue from its last checkpoint")
    trust_config_code: bool = arg(False, "on --resume, allow the run's config.json to name code to import "
                                         "(a 'pkg.mod:fn' reward or a 'pkg.mod:Env' env): only for run "
                                         "folders you trust, as importing runs their code")
    max_failures: int = arg(3, "stop after this many consecutive skipped (non-finite) iterations")
    signal_patience: int = arg(3, "iterations a judgement on the learning signal spans: this many in a row "
                                  "without usable signal log a warning; a task reward that was one value for "
                                  "every episode of the first this-many iterations (or of as many after a "
                                  "--difficulty-schedule step) stops the run (exit 1, no final/); "
                                  "--difficulty-schedule averages its accuracy over this many")
    max_zero_std_groups: float = arg(0.9, "an iteration has no usable signal when more than this share of its "
                                          "groups (grpo/rloo) got one task reward for all their samples, or when "
                                          "every episode got the same reward (logged: signal/frac_zero_std_groups)")
    difficulty_schedule: float | None = arg(
        None, "ACCURACY: TextReasoning-v0 only: train from difficulty 1 and move up a level (up to 5) when the "
              "share of correct answers (task reward >= 1) over the last signal_patience iterations at the level "
              "reaches this (logged: signal/difficulty); the held-out eval stays on the env's own level (None: off)")

    def __post_init__(self) -> None:  # noqa: C901 - one flat list of one-line checks
        super().__post_init__()
        for name in ("iterations", "prompts_per_iter", "samples_per_prompt", "epochs", "minibatch_size", "grad_accum",
                     "checkpoint_every", "max_failures", "signal_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or (self.max_new_tokens is not None and self.max_new_tokens < 1):
            raise ValueError(f"need lr > 0 and max_new_tokens >= 1 (or None), got {self.lr}, {self.max_new_tokens}")
        if self.lora_r and self.train_layers >= 0:
            raise ValueError("give either lora_r or train_layers, not both")
        if self.missing_eos_penalty is not None and not self.missing_eos_penalty >= 0:
            raise ValueError(f"missing_eos_penalty must be >= 0 (or None), got {self.missing_eos_penalty}")
        if self.eval_every < 0 or self.eval_prompts < 1:
            raise ValueError(f"need eval_every >= 0 and eval_prompts >= 1, got {self.eval_every}, {self.eval_prompts}")
        if self.keep_best and not self.eval_every:
            raise ValueError("keep_best needs eval_every > 0: best/ is chosen by the held-out eval")
        if self.advantage != "gae" and self.samples_per_prompt < 2:
            raise ValueError(f"advantage={self.advantage!r} needs samples_per_prompt >= 2")
        if self.credit == "turn" and self.advantage != "gae":
            raise ValueError(f"credit='turn' needs advantage='gae': {self.advantage} scores whole episodes")
        if self.mask_top_k < 0 or self.mask_update_every < 0 or not 0 < self.mask_top_p <= 1:
            raise ValueError(f"need mask_top_k >= 0, mask_update_every >= 0 and 0 < mask_top_p <= 1, got "
                             f"{self.mask_top_k}, {self.mask_update_every}, {self.mask_top_p}")
        if self.num_envs % self.minibatch_size and self.minibatch_size < self.num_envs:
            raise ValueError(f"minibatch_size {self.minibatch_size} must divide num_envs {self.num_envs}")
        if self.reward and self.reward_model:
            raise ValueError("give either reward or reward_model, not both")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {self.loss_type!r}; expected one of {LOSS_TYPES}")
        if self.length_band is not None:
            band = tuple(self.length_band)  # a list once it has been through config.json
            if len(band) != 2 or not all(isinstance(x, (int, float)) for x in band) or not 0 <= band[0] <= band[1]:
                raise ValueError(f"length_band must be two numbers 0 <= lo <= hi, got {self.length_band}")
        if not self.length_coef >= 0:
            raise ValueError(f"length_coef must be >= 0, got {self.length_coef}")
        if not 0 <= self.max_zero_std_groups <= 1:
            raise ValueError(f"max_zero_std_groups must be in [0, 1], got {self.max_zero_std_groups}")
        if self.difficulty_schedule is not None:
            if not 0 < self.difficulty_schedule <= 1:
                raise ValueError(f"difficulty_schedule must be an accuracy in (0, 1], got {self.difficulty_schedule}")
            difficulty_levels(self.env)  # a task without levels is refused here, before a model loads
        self._check_ranges()

    def _check_ranges(self) -> None:
        """Every number its range (written ``not x > 0`` so that NaN fails too): a negative clip norm
        is gradient ascent, a zero one no update at all, a negative KL coefficient rewards drifting
        from the reference, a negative reward clip maps every reward to one value. Each would train
        (backwards or not at all) and exit 0, so each is refused when the config is parsed."""
        positive = ("lr", "max_grad_norm", "clip_range", "clip_range_value", "temperature", "reward_scale",
                    "reward_clip", "target_approx_kl", "kl_target")
        for name in positive:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name in ("vf_coef", "ent_coef", "kl_coef", "lora_r", "top_k"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "lam", "top_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not self.top_p > 0:
            raise ValueError(f"top_p must be > 0 (1: off), got {self.top_p}")
        if not self.kl_horizon >= 1 or not self.train_layers >= -1:
            raise ValueError(f"need kl_horizon >= 1 and train_layers >= -1 (all), got {self.kl_horizon}, "
                             f"{self.train_layers}")
        for name in ("exp_name", "eval_split"):
            value = getattr(self, name)
            if not value or "/" in value or "\\" in value or value.startswith(".") or not value.isprintable():
                raise ValueError(f"{name} {value!r} must be a plain name (no path separators, not hidden)")
    tensorboard: bool = arg(True, "write TensorBoard events beside metrics.csv")
    progress: bool = arg(True, "show a progress bar")

    @property
    def num_envs(self) -> int:
        return self.prompts_per_iter * self.samples_per_prompt


PRESETS: dict[str, PPOConfig] = {
    # A few minutes on 2 CPU cores with the default model; seconds with --model tiny.
    "quick": PPOConfig(iterations=12, prompts_per_iter=8, max_new_tokens=16, epochs=2, minibatch_size=8,
                       lr=2e-5, kl_coef=0.05, kl_target=None, checkpoint_every=4),
    # What `make run` trains per task (agents.pipeline picks "quick-<task>"); why: leaderboards/README.md.
    "quick-sentiment": PPOConfig(iterations=16, prompts_per_iter=16, max_new_tokens=32, epochs=2, minibatch_size=8,
                                 lr=3e-4, train_layers=8, temperature=0.7, kl_coef=0.02, kl_target=None,
                                 checkpoint_every=16, eval_every=16, eval_prompts=32, missing_eos_penalty=0.15,
                                 length_band=(0.75, 1.25), length_coef=2.0),
    "quick-summarize": PPOConfig(iterations=12, prompts_per_iter=4, samples_per_prompt=8, advantage="rloo",
                                 max_new_tokens=32, epochs=2, minibatch_size=16, grad_accum=2, lr=5e-5, train_layers=6,
                                 temperature=0.7, kl_coef=0.01, kl_target=None, checkpoint_every=12,
                                 eval_every=6, eval_prompts=32, keep_best=True),
    # GRPO on the verifier: bare-number answers (8 new tokens), 8 samples per prompt, one epoch.
    "quick-reasoning": PPOConfig(iterations=24, prompts_per_iter=8, samples_per_prompt=8, advantage="grpo",
                                 max_new_tokens=8, epochs=1, minibatch_size=32, lr=5e-5, train_layers=8,
                                 kl_coef=0.02, kl_target=None, checkpoint_every=24, eval_every=12, eval_prompts=64),
    # GRPO on tool episodes (the call, the calculator's result, the answer) from the few-demonstration SFT.
    "quick-reasoningtools": PPOConfig(iterations=8, prompts_per_iter=8, samples_per_prompt=8, advantage="grpo",
                                      epochs=1, minibatch_size=32, grad_accum=4, lr=1e-4, train_layers=8,
                                      kl_coef=0.02, kl_target=None, checkpoint_every=8, eval_every=8,
                                      eval_prompts=32),
    # GRPO on QA's token F1, 8 questions x 4 answers per iteration (lr probes: leaderboards/README.md).
    "quick-qa": PPOConfig(iterations=24, prompts_per_iter=8, samples_per_prompt=4, advantage="grpo",
                          max_new_tokens=16, epochs=1, minibatch_size=16, lr=2e-4, train_layers=8, temperature=0.7,
                          kl_coef=0.02, kl_target=None, checkpoint_every=24, eval_every=12, eval_prompts=48),
    # GAE with per-turn credit (each turn's reward at the action that ended it), 4 conversations per
    # prompt. Measured against RLOO on the return and GAE on the return, same SFT start and budget
    # (leaderboards/README.md): relevance rises only with per-turn credit.
    "quick-dialogue": PPOConfig(iterations=12, prompts_per_iter=4, samples_per_prompt=4, advantage="gae",
                                credit="turn", epochs=2, minibatch_size=8, lr=1e-4, train_layers=8, temperature=0.7,
                                kl_coef=0.02, kl_target=None, checkpoint_every=12, eval_every=6, eval_prompts=32,
                                length_band=(0.75, 1.25), length_coef=2.0),
    # The tiny model on the synthetic task: reward ~0.2 -> ~1.0 in 80 iterations, ~15 s on 2 CPU cores.
    "tiny": PPOConfig(env="TextCount-v0", model="tiny", iterations=80, prompts_per_iter=16, max_new_tokens=12,
                      epochs=4, minibatch_size=8, lr=3e-3, kl_coef=0.001, kl_target=None, checkpoint_every=10),
    # One GPU, what `evals.run --suite full` trains: full fine-tuning in bf16 autocast.
    "default-sentiment": PPOConfig(iterations=60, prompts_per_iter=64, max_new_tokens=32, epochs=4, minibatch_size=16,
                                   lr=1e-5, checkpoint_every=30, eval_every=10, eval_prompts=128,
                                   missing_eos_penalty=0.15, length_band=(0.75, 1.25), length_coef=2.0),
    "default-summarize": PPOConfig(iterations=40, prompts_per_iter=32, max_new_tokens=48, epochs=4, minibatch_size=16,
                                   lr=1e-5, kl_coef=0.05, kl_target=None, checkpoint_every=20, eval_every=10,
                                   eval_prompts=64),
    # critic-free GRPO on a verifier reward: 8 samples per prompt, the group mean as the baseline
    "default-reasoning": PPOConfig(iterations=40, prompts_per_iter=16, samples_per_prompt=8, advantage="grpo",
                                   max_new_tokens=32, epochs=2, minibatch_size=32, lr=1e-5, kl_coef=0.02,
                                   kl_target=None, checkpoint_every=20, eval_every=10, eval_prompts=128),
    "default": PPOConfig(iterations=200, prompts_per_iter=64, epochs=4, minibatch_size=16, lr=1e-5,
                         checkpoint_every=20),
}
# On a reward model ("<preset>-<task>-rm", agents.pipeline --ppo-reward rm): whitened scores, own KL weight.
PRESETS["quick-sentiment-rm"] = dataclasses.replace(PRESETS["quick-sentiment"], kl_coef=0.03, whiten_scores=True)
# the reward model's turns keep RLOO on the whitened return: per-turn credit would place each turn's
# raw score, offset included, before the whitening that removes it (not measured on the RM)
PRESETS["quick-dialogue-rm"] = dataclasses.replace(PRESETS["quick-dialogue"], advantage="rloo", credit="episode",
                                                   whiten_scores=True)
PRESETS["quick-summarize-rm"] = dataclasses.replace(PRESETS["quick-summarize"], temperature=1.0, kl_coef=0.2,
                                                    iterations=10, checkpoint_every=10, eval_every=10,
                                                    eval_prompts=16, keep_best=False)


def resume_config(cfg: PPOConfig, argv: list[str]) -> PPOConfig:
    """The run's own saved config, except ``resume`` and the fields given on the command line that
    may change without changing what the run computes (``--iterations`` to extend it, ``--progress``,
    ``--tensorboard``, ``--checkpoint-every``, ``--eval-every``); each change is logged. A flag left
    out keeps the run's value (an 8-iteration run resumed without ``--iterations`` stays at 8)."""
    run = Path(cfg.resume)
    path = run / "config.json"
    if (run / "trainer_state.json").is_file() or (run / "policy.json").is_file():
        raise ValueError(f"--resume {run} is a checkpoint folder inside a run; give the run folder itself: "
                         f"--resume {run.parent}")
    if not path.is_file():
        raise FileNotFoundError(f"--resume {cfg.resume}: no config.json there (not a textenv PPO run folder)")
    try:
        saved = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--resume {cfg.resume}: its config.json is not valid JSON ({exc})") from None
    fields = {f.name for f in dataclasses.fields(PPOConfig)}
    if not isinstance(saved, dict) or set(saved) - fields:
        unknown = sorted(set(saved) - fields) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"--resume {cfg.resume}: its config.json is not a PPO run's config (unknown: {unknown})")
    refuse_config_code(saved, f"--resume {cfg.resume}: its config.json", cfg.trust_config_code)
    given = given_fields(PPOConfig, argv, PRESETS)  # the CLI's own parser: its flag spellings and abbreviations
    allowed = {"iterations", "progress", "tensorboard", "checkpoint_every", "eval_every", "trust_config_code"}
    changes = {k: getattr(cfg, k) for k in sorted(given & allowed) if saved.get(k) != getattr(cfg, k)}
    for key, value in changes.items():
        logger.info("resume: %s %r -> %r (given on the command line)", key, saved.get(key), value)
    ignored = sorted(given - allowed - {"resume"})
    if ignored:
        logger.warning("resume: keeping the run's own %s (only %s may change on resume)", ignored, sorted(allowed))
    return PPOConfig(**{**saved, **changes, "resume": cfg.resume, "trust_config_code": cfg.trust_config_code})
