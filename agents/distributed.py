"""Data parallelism under ``accelerate launch`` (any number of processes/nodes), for the learners
and the eval suite.

Each process rolls out its own shard of prompts; gradients are averaged across processes before
every optimizer step, so the weights stay identical everywhere; decisions that must agree (skip an
update, stop an epoch early, the KL coefficient) are reduced first. With one process every method
is a no-op, so single-process runs are unchanged. accelerate sets the process group up (gloo on
CPUs, NCCL on GPUs); we only use ``torch.distributed`` collectives on top of it. On a machine
without GPUs, launch with ``accelerate launch --multi_gpu --num_processes N`` (it starts N
processes through torchrun; they run on the CPU with gloo): ``--cpu`` alone starts one process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

import torch

__all__ = ["Dist", "parameter_checksum"]


class Dist:
    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        if self.world > 1:
            from accelerate import PartialState

            # cpu=True on a machine without CUDA: otherwise accelerate sees no distributed setup there
            state = PartialState(cpu=not torch.cuda.is_available())
            self.rank, self.world = state.process_index, state.num_processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _reduce(self, t: torch.Tensor, op) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(t, op=op)
        return t

    def mean(self, value: float) -> float:
        """The mean of ``value`` over processes."""
        t = torch.tensor([float(value)], dtype=torch.float64)
        return float(self._reduce(t, torch.distributed.ReduceOp.SUM)[0]) / self.world if self.world > 1 else value

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on at least one."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        return bool(self._reduce(t, torch.distributed.ReduceOp.MAX)[0] > 0)

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        if self.world == 1:
            return
        for p in params:
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
                p.grad /= self.world

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def gather(self, objects: list) -> list:
        """Every process's ``objects`` (picklable), concatenated in rank order, on every process."""
        if self.world == 1:
            return list(objects)
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, list(objects))
        return [x for part in parts for x in part]


def parameter_checksum(module: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal on every process iff the weights are identical."""
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
