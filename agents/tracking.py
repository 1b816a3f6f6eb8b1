"""One small metrics tracker: TensorBoard + a CSV, keys grouped as cleanrl does
(``charts/``, ``losses/``, ``objective/``, ``rewards/<part>/mean``)."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

from textenv.io import atomic_open, remove_stale

__all__ = ["Tracker", "read_metrics", "stage_memory"]

logger = logging.getLogger(__name__)


class Tracker:
    """Appends one row per iteration to ``metrics.csv`` and writes the same scalars to TensorBoard.

    The CSV header grows when a new key appears, so a resumed run keeps one file; every rewrite is
    atomic (a kill mid-write keeps the previous file). ``resume_step``: the iteration a resumed run
    continues after; TensorBoard drops what a killed run logged past it (``purge_step``), so the
    resumed iterations appear once. TensorBoard is optional: without it only the CSV is written.
    """

    def __init__(self, directory: str | Path, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / "metrics.csv"
        remove_stale(self.csv_path)  # the temp file of a rewrite a kill interrupted
        self.rows = read_metrics(self.csv_path)
        if resume_step is not None:
            self.rows = [r for r in self.rows if int(r["iteration"]) <= resume_step]
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resume_step is None else resume_step + 1
                self.writer = SummaryWriter(str(self.dir), purge_step=purge)
            except ImportError:  # pragma: no cover - tensorboard is a dependency, but stay usable
                logger.warning("tensorboard is not installed; writing metrics.csv only")

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.rows = [r for r in self.rows if int(float(r["iteration"])) < step]  # a resumed run rewrites
        row = {"iteration": step, **{k: float(v) for k, v in metrics.items()}}
        self.rows.append(row)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with atomic_open(self.csv_path) as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        if self.writer is not None:
            for k, v in metrics.items():
                if math.isfinite(float(v)):
                    self.writer.add_scalar(k, float(v), step)
            self.writer.flush()

    def log_samples(self, step: int, samples: list[Mapping[str, object]]) -> None:
        """A few sample texts: one JSON line per sample in ``samples.jsonl`` and a TensorBoard
        text panel (``eval/samples``), so a reader sees what the reward numbers stand for."""
        with (self.dir / "samples.jsonl").open("a", encoding="utf-8") as f:
            for sample in samples:
                f.write(json.dumps({"iteration": step, **sample}, default=str) + "\n")
        if self.writer is not None and samples:
            rows = ["| reward | kl | text |", "|---:|---:|---|"]
            rows += [f"| {float(x.get('reward', math.nan)):.3f} | {float(x.get('kl', math.nan)):.2f} | "
                     f"{str(x.get('text', '')).replace('|', '/').replace(chr(10), ' ')} |" for x in samples]
            self.writer.add_text("eval/samples", "\n".join(rows), step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def stage_memory(reset: bool = True) -> dict[str, float]:
    """Resident memory of this process in GB: ``rss`` now and ``peak`` since the last reset (the
    kernel's high-water mark, ``VmHWM``), then (``reset``) hands freed heap back to the OS and
    restarts the high-water mark, so each stage of a long run gets its own peak. Linux only;
    elsewhere an empty dict."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    wanted = ("VmRSS", "VmHWM")
    fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith(wanted)}
    out = {"rss_gb": int(fields.get("VmRSS", 0)) / 2**20, "peak_gb": int(fields.get("VmHWM", 0)) / 2**20}
    if reset:
        import ctypes
        import gc

        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed arenas otherwise
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except (OSError, AttributeError):
            pass
    return out
