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
    ppo_task_seed1/ with ``--rl-seeds 0 1 2``: the same RL stage trained with another seed (and
                    ``ppo_rm_seed1/``...), from the same SFT model
    ppo_runs/       the PPO run directories: metrics.csv (with held-out eval/ rows), TensorBoard
                    events, samples.jsonl, reward.png, checkpoints
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agents import ppo, reward_model, sft
from agents.run_files import plot_rewards
from agents.tracking import StageMemory
from textenv.cli import arg, cli, parse_config
from textenv.context import ENV_HELP, EnvContext
from textenv.io import FolderLock, atomic_dir, atomic_write, ensure_replaceable, is_complete, remove_stale

__all__ = ["PipelineConfig", "Stage", "default_root", "main", "outdated_stages", "plan_stages", "recipe_changes",
           "run_pipeline"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig(EnvContext):
    """SFT, then a reward model, then PPO, on one task, from base ``model``, every stage on ``seed``."""

    env: str = arg("TextSentiment-v0", ENV_HELP)
    preset: Literal["quick", "default", "tiny"] = arg("quick", "budget of every stage: 'quick' (CPU), 'default' "
                                                              "(GPU) or 'tiny' (seconds, with --model tiny)")
    ppo_reward: Literal["rm", "task", "both", "none"] = arg("both", "PPO's reward: the trained reward model, the "
                                                            "task's reward, one PPO run with each, or no RL "
                                                            "stage ('none': SFT alone, a reward model if asked)")
    reward_model: bool | None = arg(None, "train the reward model: None (when PPO's reward uses it), True (also "
                                          "for best-of-n reranking and rm_score alone), False (never: "
                                          "--ppo-reward task only)")
    ppo_iterations: int | None = arg(None, "override the PPO preset's iterations")
    out: str | None = arg(None, "root of the checkpoints (default runs/pipeline/<env>__<model>)")
    rl_seeds: tuple[int, ...] = arg((), "train each RL stage once per seed, all from the same SFT model (and reward "
                                        "model): ppo_task/ for --seed, ppo_task_seed<S>/ for another seed S "
                                        "(training variance for evals.run --seeds); empty: --seed only")
    progress: bool = arg(True, "show every stage's progress bars")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ppo_iterations is not None and self.ppo_iterations < 1:
            raise ValueError(f"ppo_iterations must be >= 1 (or None: the preset's), got {self.ppo_iterations}")
        if any(not isinstance(s, int) or s < 0 for s in self.rl_seeds) or len(set(self.rl_seeds)) < len(self.rl_seeds):
            raise ValueError(f"rl_seeds must be distinct integers >= 0, got {list(self.rl_seeds)}")
        if self.reward_model is False and self.ppo_reward not in ("task", "none"):
            raise ValueError(f"--reward-model false with --ppo-reward {self.ppo_reward}: PPO on the reward model "
                             "needs it; use --ppo-reward task")


def rl_stage(reward: str, seed: int | None = None, base_seed: int = 0) -> str:
    """The folder of the RL stage on ``reward`` ("task" or "rm") trained with ``seed``: ``ppo_task``
    for the pipeline's own seed, ``ppo_task_seed<S>`` for another one."""
    return f"ppo_{reward}" if seed is None or seed == base_seed else f"ppo_{reward}_seed{seed}"


def _rl_seeds(cfg: PipelineConfig) -> tuple[int, ...]:
    return tuple(dict.fromkeys(cfg.rl_seeds)) or (cfg.seed,)


def default_root(env: str, model: str) -> Path:
    """Where a pipeline on ``env`` from ``model`` keeps its checkpoints without ``--out``:
    ``runs/pipeline/<env>__<model's last path part>``. ``evals.run`` finds the suites' checkpoints
    there, so both read this one spelling (two copies once drifted apart)."""
    return Path("runs") / "pipeline" / f"{env}__{Path(model).name}"


def stage_dirs(cfg: PipelineConfig) -> dict[str, Path]:
    root = Path(cfg.out or default_root(cfg.env, cfg.model))
    rl = {rl_stage(r, s, cfg.seed): root / rl_stage(r, s, cfg.seed) for s in _rl_seeds(cfg) for r in ("task", "rm")}
    return {"root": root, "sft": root / "sft", "reward_model": root / "reward_model", "ppo_task": root / "ppo_task",
            "ppo_rm": root / "ppo_rm", **rl, "ppo_runs": root / "ppo_runs"}


def _has_references(env_id: str) -> bool:
    from textenv.tasks import task_of

    return bool(task_of(env_id).load("train")[0].references)


def _preset(presets: dict[str, Any], preset: str, env_id: str, rm: bool = False) -> Any:
    """A stage's preset for a task: ``<preset>-<task>-rm`` (PPO on the reward model) when asked
    and present, else the task-specific ``<preset>-<task>``, else ``<preset>``."""
    name = env_id.removeprefix("Text").split("-")[0].lower()
    names = ([f"{preset}-{name}-rm"] if rm else []) + [f"{preset}-{name}", preset]
    return presets[next(n for n in names if n in presets)]


def _ppo_config(cfg: PipelineConfig, dirs: dict[str, Path], reward: str, seed: int) -> ppo.PPOConfig:
    pcfg = dataclasses.replace(
        _preset(ppo.PRESETS, cfg.preset, cfg.env, rm=reward == "rm"), env=cfg.env, model=str(dirs["sft"]),
        seed=seed, device=cfg.device, precision=cfg.precision, runs=str(dirs["ppo_runs"]),
        exp_name=f"pipeline-{reward}", progress=cfg.progress,
        reward_model=str(dirs["reward_model"]) if reward == "rm" else None,
    )
    if cfg.ppo_iterations is not None:
        pcfg = dataclasses.replace(pcfg, iterations=cfg.ppo_iterations)
    return pcfg


def _run_ppo(pcfg: ppo.PPOConfig, out: Path) -> dict[str, Any]:
    trainer = ppo.PPOTrainer(pcfg)
    history = trainer.train()
    plot_rewards(trainer.dir)
    kept = "best" if pcfg.keep_best else "final"  # --keep-best: the best held-out eval's weights
    kept_iteration = trainer.best_iteration if pcfg.keep_best else trainer.iteration
    with atomic_dir(out) as tmp:
        shutil.copytree(trainer.dir / kept, tmp, dirs_exist_ok=True)
        (tmp / "ppo_run.json").write_text(json.dumps({"run": str(trainer.dir), "kept": kept,
                                                      "iteration": kept_iteration}))
    if pcfg.keep_best:
        logger.info("%s %s: kept best/ from iteration %d (held-out reward %.4f)", pcfg.env, out.name,
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
    ours = {p.name for k, p in dirs.items() if k != "root"} | {RECIPES}

    def is_ours(name: str) -> bool:  # a stage, another seed's RL stage, or a hidden temporary copy of one
        return (name in ours or any(name.startswith(f".{o}.") for o in ours)
                or re.fullmatch(r"\.?ppo_(task|rm)_seed\d+(\..*)?", name) is not None)

    foreign = sorted(p.name for p in root.iterdir() if not is_ours(p.name)) if root.is_dir() else []
    if foreign:
        raise FileExistsError(f"--out {root} is not a pipeline folder (it holds {foreign[:3]}); give a new or "
                              "empty folder")


@dataclass(frozen=True)
class Stage:
    """One stage as this run would build it: its checkpoint folder, the config its trainer gets,
    and its recipe (that config and the recipes of the stages it starts from): a finished stage is
    reused only when the recipe it was built with is this one."""

    name: str  # "sft", "reward_model", "ppo_task", "ppo_rm"
    config: Any  # SFTConfig, RewardModelConfig or PPOConfig
    recipe: dict[str, Any]


RECIPES = "stages.json"  # beside the stage folders: each finished stage's recipe
# fields that change what a stage prints or the hardware it ran on, not what it is: a checkpoint
# trained with --device auto on a CPU (fp32 there; "auto" is bf16 on a GPU) is the one an eval with
# --device cpu or --precision bf16 asks for
_NOT_RECIPE = ("progress", "device", "precision")


def _model_fingerprint(model: str) -> str:
    """A base model as a recipe sees it: its name, or for a local folder its files' names, sizes and
    modification times (a folder whose weights changed is another start)."""
    path = Path(model)
    if not path.is_dir():
        return model
    files = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in path.rglob("*") if p.is_file())
    return f"{path.resolve()}#{hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]}"


def _recipe(config: Any, root: Path, **inputs: dict[str, Any]) -> dict[str, Any]:
    """``config`` as JSON values with paths under ``root`` written relative to it (a moved pipeline
    folder is the same pipeline), minus :data:`_NOT_RECIPE`, plus the recipes of its inputs."""
    prefix = str(root)

    def rel(value: Any) -> Any:
        return f"<out>{value[len(prefix):]}" if isinstance(value, str) and value.startswith(prefix) else value

    fields = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    return {"config": {k: rel(v) for k, v in fields.items() if k not in _NOT_RECIPE}, "inputs": inputs}


def plan_stages(cfg: PipelineConfig, dirs: dict[str, Path]) -> list[Stage]:
    """Every stage this run may need, its config built (and so checked) before any training."""
    root = dirs["root"]
    # a task without references (sentiment) has no demonstrations: adapt to its domain text instead
    mode = "sft" if _has_references(cfg.env) else "domain"
    scfg = dataclasses.replace(_preset(sft.PRESETS, cfg.preset, cfg.env), env=cfg.env, model=cfg.model,
                               seed=cfg.seed, device=cfg.device, precision=cfg.precision, out=str(dirs["sft"]),
                               mode=mode, progress=cfg.progress)
    stages = [Stage("sft", scfg, _recipe(scfg, root, base={"model": _model_fingerprint(cfg.model)}))]
    sft_recipe = stages[0].recipe
    rewards = {"both": ("task", "rm"), "none": ()}.get(cfg.ppo_reward, (cfg.ppo_reward,))
    if cfg.reward_model or ("rm" in rewards and cfg.reward_model is None):
        rcfg = dataclasses.replace(_preset(reward_model.PRESETS, cfg.preset, cfg.env), env=cfg.env,
                                   model=str(dirs["sft"]), seed=cfg.seed, device=cfg.device, precision=cfg.precision,
                                   out=str(dirs["reward_model"]), progress=cfg.progress)
        stages.append(Stage("reward_model", rcfg, _recipe(rcfg, root, sft=sft_recipe)))
    for seed in _rl_seeds(cfg):
        for reward in rewards:
            pcfg = _ppo_config(cfg, dirs, reward, seed)
            inputs = {"sft": sft_recipe, **({"reward_model": stages[1].recipe} if reward == "rm" else {})}
            stages.append(Stage(rl_stage(reward, seed, cfg.seed), pcfg, _recipe(pcfg, root, **inputs)))
    return stages


def recipe_changes(old: Any, new: Any, where: str = "") -> list[str]:
    """What differs between two recipes, as ``"path: old -> new"`` lines (empty when equal).

    >>> recipe_changes({"config": {"seed": 0, "lr": 1.0}}, {"config": {"seed": 1, "lr": 1.0}})
    ['config.seed: 0 -> 1']
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{where}.{key}" if where else str(key)
            out += recipe_changes(old.get(key, "<absent>"), new.get(key, "<absent>"), path)
        return out
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def _read_recipes(root: Path) -> dict[str, Any]:
    path = root / RECIPES
    if not path.is_file():
        return {}
    try:
        recipes = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        logger.warning("%s is not valid JSON: every finished stage there is rebuilt", path)
        return {}
    return recipes if isinstance(recipes, dict) else {}


def _changes(recipes: dict[str, Any], stage: Stage, rebuilt: set[str]) -> list[str]:
    """Why a finished ``stage`` cannot be reused as it is (empty: it can); ``rebuilt``: the stages
    this run rebuilds before it (a stage started from one of them is rebuilt too)."""
    if stage.name not in recipes:
        return ["no record of the settings it was built with"]
    return ([f"its input {name} is rebuilt" for name in stage.recipe["inputs"] if name in rebuilt]
            + recipe_changes(recipes[stage.name], stage.recipe))


def outdated_stages(cfg: PipelineConfig) -> dict[str, list[str]]:
    """The finished stages in ``cfg``'s folder that :func:`run_pipeline` would rebuild (built with other
    settings, or with no record of them), each with the differences; what an eval suite asks before
    it evaluates a pipeline's checkpoints."""
    dirs = stage_dirs(cfg)
    recipes = _read_recipes(dirs["root"]) if dirs["root"].is_dir() else {}
    outdated: dict[str, list[str]] = {}
    for stage in plan_stages(cfg, dirs):
        if not is_complete(dirs[stage.name]):
            outdated[stage.name] = []  # missing: built anyway, and so is every stage on it
        elif changes := _changes(recipes, stage, set(outdated)):
            outdated[stage.name] = changes
    return {name: changes for name, changes in outdated.items() if changes}


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run the stages that are missing or were built with other settings; return the checkpoint
    paths and each stage's metrics ('cached' for a stage reused as it is)."""
    dirs = stage_dirs(cfg)
    _check_root(dirs)
    stages = plan_stages(cfg, dirs)  # every stage's settings checked before any work
    for stage in stages:  # a user's folder is refused before any work
        ensure_replaceable(dirs[stage.name])
    dirs["root"].mkdir(parents=True, exist_ok=True)
    lock = FolderLock(dirs["root"], "pipeline folder")  # two pipelines on one --out would build the same stages
    try:
        for stage in stages:
            remove_stale(dirs[stage.name])  # killed stages' temp folders (~0.5 GB each); we hold the lock
        report: dict[str, Any] = {k: str(v) for k, v in dirs.items()}
        if not any(s.name == "reward_model" for s in stages):
            report["reward_model_metrics"] = "not trained (--ppo-reward task)"
        with StageMemory() as meter:  # each stage's peak memory from here on is its own
            _run_stages(stages, dirs, report, meter)
    finally:
        lock.release()
    return report


def _run_stages(stages: list[Stage], dirs: dict[str, Path], report: dict[str, Any], meter: StageMemory) -> None:
    clock = time.perf_counter()
    recipes = _read_recipes(dirs["root"])
    rebuilt: set[str] = set()
    for stage in stages:
        out = dirs[stage.name]
        if is_complete(out):
            changes = _changes(recipes, stage, rebuilt)
            if not changes:
                logger.info("%s checkpoint %s exists, built with these settings: skipped", stage.name, out)
                report[f"{stage.name}_metrics"] = "cached"
                continue
            logger.warning("%s checkpoint %s was built with other settings (%s): rebuilding it", stage.name, out,
                           "; ".join(changes[:5]) + ("; ..." if len(changes) > 5 else ""))
        rebuilt.add(stage.name)
        recipes.pop(stage.name, None)  # the old record goes before the stage is rebuilt: a kill leaves none
        atomic_write(dirs["root"] / RECIPES, json.dumps(recipes, indent=1))
        report[f"{stage.name}_metrics"] = _train_stage(stage, out)
        recipes[stage.name] = stage.recipe
        atomic_write(dirs["root"] / RECIPES, json.dumps(recipes, indent=1))
        mem = meter.lap()
        secs, clock = time.perf_counter() - clock, time.perf_counter()
        report[f"{stage.name}_resources"] = {"seconds": round(secs, 1), **{k: round(v, 2) for k, v in mem.items()}}
        logger.info("%s %s: %.0f s, peak RSS %.2f GB", stage.config.env, stage.name, secs,
                    mem.get("peak_gb", float("nan")))


def _train_stage(stage: Stage, out: Path) -> Any:
    if stage.name == "sft":
        return {k: v for k, v in sft.train_sft(stage.config).items() if k != "history"}
    if stage.name == "reward_model":
        return reward_model.train_reward_model(stage.config)
    return _run_ppo(stage.config, out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run_pipeline(parse_config(PipelineConfig, argv))
    print(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    cli(main)
