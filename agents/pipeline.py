"""The RLHF recipe end to end: SFT -> reward model -> PPO, each step skipped when its checkpoint
already exists, writing the checkpoints the eval suite reads.

    python -m agents.pipeline --env TextSentiment-v0 --preset quick
    python -m agents.pipeline --env TextCount-v0 --model tiny --preset tiny   # seconds
    python -m agents.pipeline --env TextReasoning-v0 --ppo-reward task   # SFT -> GRPO, no reward model
    python -m agents.pipeline --env TextSummarize-v0 --ppo-reward task --reward-model true  # RM for best-of-n

Each stage takes the task's own preset where one exists (``quick-reasoning``, then ``quick``).

Layout under ``--out`` (default ``runs/pipeline/<env>__<model>``)::

    sft/            a causal-LM checkpoint (agents.sft; domain adaptation for tasks without references)
    reward_model/   a sequence-classifier checkpoint (agents.reward_model), trunk = the SFT model,
                    trained on the SFT model's samples ranked by the task's reward + the task's pairs;
                    when PPO uses it or ``--reward-model true`` asks (best-of-n reranking alone)
    ppo_task/       the PPO policy (agents.ppo) started from the SFT model, rewarded by the task's
                    own reward (VADER, ROUGE-L...): ``--ppo-reward task`` or ``both``
    ppo_rm/         the same, rewarded by the reward model: ``--ppo-reward rm`` or ``both``
    ppo_runs/       the PPO run directories: metrics.csv (with held-out eval/ rows), TensorBoard
                    events, samples.jsonl, reward.png, checkpoints
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agents import ppo, reward_model, sft
from agents.config import arg, cli, parse_config
from agents.tracking import StageMemory
from textenv.context import ENV_HELP, EnvContext
from textenv.io import atomic_dir, ensure_replaceable, is_complete, remove_stale

__all__ = ["PipelineConfig", "main", "run_pipeline"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig(EnvContext):
    """SFT, then a reward model, then PPO, on one task, from base ``model``, every stage on ``seed``."""

    env: str = arg("TextSentiment-v0", ENV_HELP)
    preset: Literal["quick", "default", "tiny"] = arg("quick", "budget of every stage: 'quick' (CPU), 'default' "
                                                              "(GPU) or 'tiny' (seconds, with --model tiny)")
    ppo_reward: Literal["rm", "task", "both"] = arg("both", "PPO's reward: the trained reward model, the task's "
                                                    "reward, or one PPO run with each")
    reward_model: bool | None = arg(None, "train the reward model: None (when PPO's reward uses it), True (also "
                                          "for best-of-n reranking and rm_score alone), False (never: "
                                          "--ppo-reward task only)")
    ppo_iterations: int | None = arg(None, "override the PPO preset's iterations")
    out: str | None = arg(None, "root of the checkpoints (default runs/pipeline/<env>__<model>)")
    progress: bool = arg(True, "show every stage's progress bars")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward_model is False and self.ppo_reward != "task":
            raise ValueError(f"--reward-model false with --ppo-reward {self.ppo_reward}: PPO on the reward model "
                             "needs it; use --ppo-reward task")


def stage_dirs(cfg: PipelineConfig) -> dict[str, Path]:
    root = Path(cfg.out or Path("runs") / "pipeline" / f"{cfg.env}__{Path(cfg.model).name}")
    return {"root": root, "sft": root / "sft", "reward_model": root / "reward_model", "ppo_task": root / "ppo_task",
            "ppo_rm": root / "ppo_rm", "ppo_runs": root / "ppo_runs"}


def _has_references(env_id: str) -> bool:
    from textenv.tasks import task_of

    return bool(task_of(env_id).load("train")[0].references)


def _preset(presets: dict[str, Any], preset: str, env_id: str, rm: bool = False) -> Any:
    """A stage's preset for a task: ``<preset>-<task>-rm`` (PPO on the reward model) when asked
    and present, else the task-specific ``<preset>-<task>``, else ``<preset>``."""
    name = env_id.removeprefix("Text").split("-")[0].lower()
    names = ([f"{preset}-{name}-rm"] if rm else []) + [f"{preset}-{name}", preset]
    return presets[next(n for n in names if n in presets)]


def _run_ppo(cfg: PipelineConfig, dirs: dict[str, Path], reward: str) -> dict[str, Any]:
    pcfg = dataclasses.replace(
        _preset(ppo.PRESETS, cfg.preset, cfg.env, rm=reward == "rm"), env=cfg.env, model=str(dirs["sft"]),
        seed=cfg.seed, device=cfg.device, precision=cfg.precision, runs=str(dirs["ppo_runs"]),
        exp_name=f"pipeline-{reward}", progress=cfg.progress,
        reward_model=str(dirs["reward_model"]) if reward == "rm" else None,
    )
    if cfg.ppo_iterations is not None:
        pcfg = dataclasses.replace(pcfg, iterations=cfg.ppo_iterations)
    trainer = ppo.PPOTrainer(pcfg)
    history = trainer.train()
    ppo.plot_rewards(trainer.dir)
    kept = "best" if pcfg.keep_best else "final"  # --keep-best: the best held-out eval's weights
    kept_iteration = trainer.best_iteration if pcfg.keep_best else trainer.iteration
    with atomic_dir(dirs[f"ppo_{reward}"]) as tmp:
        shutil.copytree(trainer.dir / kept, tmp, dirs_exist_ok=True)
        (tmp / "ppo_run.json").write_text(json.dumps({"run": str(trainer.dir), "kept": kept,
                                                      "iteration": kept_iteration}))
    if pcfg.keep_best:
        logger.info("%s ppo_%s: kept best/ from iteration %d (held-out reward %.4f)", cfg.env, reward,
                    trainer.best_iteration, trainer.best_eval)
    rewards = [m["charts/reward_mean"] for m in history if "charts/reward_mean" in m]
    held = [m["eval/reward_mean"] for m in history if "eval/reward_mean" in m]
    return {"run": str(trainer.dir), "reward_first": rewards[0] if rewards else None,
            "reward_last": rewards[-1] if rewards else None, "eval_reward_first": held[0] if held else None,
            "eval_reward_last": held[-1] if held else None, "iterations": len(history),
            "kept_iteration": kept_iteration}


def _check_root(dirs: dict[str, Path]) -> None:
    """``--out`` must be new, empty, or a pipeline's own folder (its stage folders and their hidden
    temporary copies): the stages are never written into a folder of the user's."""
    root = dirs["root"]
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"--out {root} is a file, not a folder")
    ours = {p.name for k, p in dirs.items() if k != "root"}
    foreign = sorted(p.name for p in root.iterdir() if p.name not in ours
                     and not any(p.name.startswith(f".{name}.") for name in ours)) if root.is_dir() else []
    if foreign:
        raise FileExistsError(f"--out {root} is not a pipeline folder (it holds {foreign[:3]}); give a new or "
                              "empty folder")


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run the missing stages; return the checkpoint paths and each stage's metrics (or 'cached')."""
    dirs = stage_dirs(cfg)
    _check_root(dirs)
    for stage in ("sft", "reward_model", "ppo_task", "ppo_rm"):  # a user's folder is refused before any work
        ensure_replaceable(dirs[stage])
        remove_stale(dirs[stage], older_than=3600)  # temp folders of killed stages (~0.5 GB each)
    report: dict[str, Any] = {k: str(v) for k, v in dirs.items()}
    with StageMemory() as meter:  # each stage's peak memory from here on is its own
        _run_stages(cfg, dirs, report, meter)
    return report


def _run_stages(cfg: PipelineConfig, dirs: dict[str, Path], report: dict[str, Any], meter: StageMemory) -> None:
    clock = time.perf_counter()

    def done(stage: str) -> None:
        nonlocal clock
        mem = meter.lap()
        secs, clock = time.perf_counter() - clock, time.perf_counter()
        report[f"{stage}_resources"] = {"seconds": round(secs, 1), **{k: round(v, 2) for k, v in mem.items()}}
        logger.info("%s %s: %.0f s, peak RSS %.2f GB", cfg.env, stage, secs, mem.get("peak_gb", float("nan")))

    if is_complete(dirs["sft"]):
        logger.info("SFT checkpoint %s exists: skipped", dirs["sft"])
        report["sft_metrics"] = "cached"
    else:
        # a task without references (sentiment) has no demonstrations: adapt to its domain text instead
        mode = "sft" if _has_references(cfg.env) else "domain"
        scfg = dataclasses.replace(_preset(sft.PRESETS, cfg.preset, cfg.env), env=cfg.env, model=cfg.model,
                                   seed=cfg.seed, device=cfg.device, precision=cfg.precision, out=str(dirs["sft"]),
                                   mode=mode, progress=cfg.progress)
        report["sft_metrics"] = {k: v for k, v in sft.train_sft(scfg).items() if k != "history"}
        done("sft")
    rewards = ("task", "rm") if cfg.ppo_reward == "both" else (cfg.ppo_reward,)
    if not (cfg.reward_model or ("rm" in rewards and cfg.reward_model is None)):
        report["reward_model_metrics"] = "not trained (--ppo-reward task)"
    elif is_complete(dirs["reward_model"]):
        logger.info("reward-model checkpoint %s exists: skipped", dirs["reward_model"])
        report["reward_model_metrics"] = "cached"
    else:
        rcfg = dataclasses.replace(_preset(reward_model.PRESETS, cfg.preset, cfg.env), env=cfg.env,
                                   model=str(dirs["sft"]), seed=cfg.seed, device=cfg.device, precision=cfg.precision,
                                   out=str(dirs["reward_model"]), progress=cfg.progress)
        report["reward_model_metrics"] = reward_model.train_reward_model(rcfg)
        done("reward_model")
    for reward in rewards:
        if is_complete(dirs[f"ppo_{reward}"]):
            logger.info("PPO checkpoint %s exists: skipped", dirs[f"ppo_{reward}"])
            report[f"ppo_{reward}_metrics"] = "cached"
        else:
            report[f"ppo_{reward}_metrics"] = _run_ppo(cfg, dirs, reward)
            done(f"ppo_{reward}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run_pipeline(parse_config(PipelineConfig, argv))
    print(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    cli(main)
