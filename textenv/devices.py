"""Devices and numeric precision: one switch for every trainer, the eval suite and the benchmarks.

``precision="auto"`` means bf16 autocast on CUDA and fp32 elsewhere; ``"bf16"`` and ``"fp32"`` are
honoured on any device. bf16 autocast also runs on a CPU, which is how the tests exercise the GPU's
mixed-precision code path on machines without one: under autocast a linear layer returns bf16 even
when its input is fp32, so every buffer that collects model outputs casts on write (fp32 buffers).

    >>> import torch
    >>> resolve_precision("auto", torch.device("cpu"))
    'fp32'
    >>> with autocast(torch.device("cpu"), "bf16"):
    ...     torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Literal

import torch

__all__ = ["PRECISIONS", "Precision", "autocast", "check_device", "check_precision", "cpu_contention", "resolve_device",
           "resolve_precision"]

logger = logging.getLogger(__name__)
_warned = False

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; anything else as torch understands it.

    Asking for CUDA on a machine (or a torch build) without it is a clear error, not a crash at the
    first tensor copy."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = check_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch build sees no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    global _warned
    if dev.type == "cpu" and not _warned and (message := cpu_contention()):
        logger.warning(message)
        _warned = True  # once per process
    return dev


def check_device(device: str | torch.device) -> torch.device | None:
    """``device`` names a device torch knows ("auto" gives None), whether or not this machine has it:
    a config checks the spelling when built, :func:`resolve_device` the hardware when a run starts."""
    if isinstance(device, torch.device) or device == "auto":
        return device if isinstance(device, torch.device) else None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N', ...") from exc


def check_precision(precision: str) -> None:
    """``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


def cpu_contention() -> str | None:
    """A warning when other processes already keep this process's cores busy and torch would
    still run one thread per core: contending threads slow CPU rollouts by an order of magnitude,
    where one thread per free core does not. None when the cores are free, when torch's threads
    were set (``OMP_NUM_THREADS``) or on a system without a load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = torch.get_num_threads()
    if threads < 2 or "OMP_NUM_THREADS" in os.environ or load < cores - 0.5:
        return None
    return (f"the CPU is already busy (1-min load {load:.1f} on {cores} cores) and torch uses {threads} threads: "
            "contending threads can slow every step by an order of magnitude; set OMP_NUM_THREADS to the number "
            "of free cores (e.g. OMP_NUM_THREADS=1) for runs that share the machine")


def resolve_precision(precision: str, device: torch.device) -> Literal["fp32", "bf16"]:
    """``"auto"`` -> ``"bf16"`` on CUDA, ``"fp32"`` elsewhere."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision  # type: ignore[return-value]


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a no-op context for fp32)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
