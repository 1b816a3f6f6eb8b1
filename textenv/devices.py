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
from typing import Literal

import torch

__all__ = ["PRECISIONS", "Precision", "autocast", "resolve_device", "resolve_precision"]

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
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu', 'cuda', 'cuda:N', ...") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch build sees no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    return dev


def resolve_precision(precision: str, device: torch.device) -> Literal["fp32", "bf16"]:
    """``"auto"`` -> ``"bf16"`` on CUDA, ``"fp32"`` elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision  # type: ignore[return-value]


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a no-op context for fp32)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
