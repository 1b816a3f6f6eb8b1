"""The run context every command shares: which model, which seed, which device, which precision, and
(for a command about one task) which env.

Every entry point's config extends :class:`RunContext`, or :class:`EnvContext` when it runs one env
(``agents.ppo``, ``agents.sft``, ``agents.reward_model``, ``agents.pipeline``, the demo), so these
fields have one name, one default and one check. The check runs in ``__post_init__``: a bad value
fails where the config is built (on the command line, at parse time) with a one-line error, before a
model is loaded.

    >>> EnvContext(env="TextCount-v0", model="tiny").device
    'auto'
    >>> RunContext(precision="fp16")
    Traceback (most recent call last):
    ...
    ValueError: unknown precision 'fp16'; expected one of ('auto', 'fp32', 'bf16')
"""

from __future__ import annotations

from dataclasses import dataclass

from textenv.cli import arg
from textenv.devices import Precision, check_device, check_precision
from textenv.models import DEFAULT_MODEL

__all__ = ["ENV_HELP", "EnvContext", "RunContext", "check_env_id"]

ENV_HELP = "env id: a registered textenv id (TextSummarize-v0, ...) or 'module:Env-vN' (a module registering one)"


def check_env_id(env: object, what: str = "env") -> None:
    """An env id is a non-empty name without spaces (``gym.make`` resolves it later)."""
    if not isinstance(env, str) or not env or any(c.isspace() for c in env):
        raise ValueError(f"{what} must be an env id such as 'TextCount-v0' or 'module:Env-v0', got {env!r}")


@dataclass(frozen=True)
class RunContext:
    """Model, seed, device and precision of a run, checked when built."""

    model: str = arg(DEFAULT_MODEL, "the model: the default one (SmolLM2-135M-Instruct unless "
                                    "$TEXTENV_DEFAULT_MODEL says otherwise), 'tiny' (seeded random, for tests), "
                                    "or a local directory (an SFT or policy checkpoint)")
    seed: int = arg(0, "seed of everything random in the run: prompts, sampling, initialisation, data order")
    device: str = arg("auto", "'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N', 'mps'")
    precision: Precision = arg("auto", "'auto' (bf16 autocast on CUDA, fp32 elsewhere), 'fp32' or 'bf16' (any device)")

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a model name or a directory, got {self.model!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        check_device(self.device)
        check_precision(self.precision)


@dataclass(frozen=True)
class EnvContext(RunContext):
    """A run on one env: the context plus its env id."""

    env: str = arg("TextCount-v0", ENV_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_env_id(self.env)
