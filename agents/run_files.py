"""What a PPO run writes beside its weights and metrics: the optimizer's state as flat tensors
(safetensors) and JSON, so a checkpoint holds no pickle, and ``reward.png``, the run's reward curve,
written atomically like every other output."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from textenv.io import atomic_write

__all__ = ["load_optimizer", "optimizer_tensors", "plot_rewards"]


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as flat tensors (safetensors) + JSON-able groups: no pickle anywhere."""
    sd = opt.state_dict()
    tensors = {f"{pid}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
               for pid, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """The inverse of :func:`optimizer_tensors`: ``opt`` as it was saved."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def plot_rewards(run: str | Path) -> Path:
    """``reward.png`` beside a run's metrics.csv: mean reward (and KL) per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.tracking import read_metrics

    every = read_metrics(Path(run) / "metrics.csv")
    rows = [r for r in every if "charts/reward_mean" in r]
    held = [r for r in every if "eval/reward_mean" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["iteration"] for r in rows], [r["charts/reward_mean"] for r in rows], marker="o", label="reward")
    if held:
        ax.plot([r["iteration"] for r in held], [r["eval/reward_mean"] for r in held], marker="s", color="tab:green",
                label="held-out reward")
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean reward")
    ax2 = ax.twinx()
    ax2.plot([r["iteration"] for r in rows], [r["objective/kl"] for r in rows], color="gray", ls="--", label="KL")
    ax2.set_ylabel("KL to reference")
    ax.set_title(Path(run).name, fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    out = Path(run) / "reward.png"
    atomic_write(out, png.getvalue())  # a kill mid-write keeps the previous curve
    return out
