"""One small metrics tracker: TensorBoard + a CSV, keys grouped as cleanrl does
(``charts/``, ``losses/``, ``objective/``, ``rewards/<part>/mean``)."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from textenv.io import atomic_open, remove_stale

__all__ = ["StageMemory", "Tracker", "library_progress", "peak_rss_gb", "read_metrics"]

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
        # O_NOFOLLOW: a link planted at samples.jsonl is an error, never a write into the file it names
        fd = os.open(self.dir / "samples.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
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


@contextmanager
def library_progress(enabled: bool) -> Iterator[None]:
    """transformers' own progress bars ("Writing model shards" on every checkpoint save) follow a
    run's ``--progress``: off inside the block when ``enabled`` is False, restored after."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            hf_logging.enable_progress_bar()


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def _status_kb(*keys: str) -> dict[str, int]:
    """Fields of ``/proc/self/status`` in kB (``VmRSS``, ``VmHWM``); empty off Linux."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    return {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith(keys)}


def peak_rss_gb() -> float | None:
    """This process's peak resident memory so far in GB (``VmHWM``); None off Linux."""
    hwm = _status_kb("VmHWM").get("VmHWM")
    return None if hwm is None else hwm / 2**20


class StageMemory:
    """Peak resident memory per stage of a long run, leaving the process's own high-water mark
    (``VmHWM``, what ``/usr/bin/time -v`` reports as the maximum resident set) untouched.

    A stage that raised ``VmHWM`` gets that exact figure; a stage that stayed under an earlier
    stage's record gets the largest ``VmRSS`` a background thread saw (polled every ``interval``
    seconds, so a spike shorter than that can be missed). Linux only; elsewhere every lap is empty.

        meter = StageMemory()
        train()
        meter.lap()   # {"rss_gb": ..., "peak_gb": ...} of train()
        evaluate()
        meter.lap()   # of evaluate() alone
        meter.close()
    """

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self._lock = threading.Lock()
        self._stop = threading.Event()
        now = _status_kb("VmRSS", "VmHWM")
        self._hwm = now.get("VmHWM", 0)
        self._seen = now.get("VmRSS", 0)
        self._thread = None
        if now:
            self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True, name="stage-memory")
            self._thread.start()

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            rss = _status_kb("VmRSS").get("VmRSS", 0)
            with self._lock:
                self._seen = max(self._seen, rss)

    def lap(self) -> dict[str, float]:
        """``rss_gb`` now and ``peak_gb`` since the last lap (or the start), then hands freed heap
        back to the OS so the next stage starts from what is really in use."""
        now = _status_kb("VmRSS", "VmHWM")
        if not now:
            return {}
        with self._lock:
            seen = max(self._seen, now["VmRSS"])
            peak = now["VmHWM"] if now["VmHWM"] > self._hwm else min(seen, now["VmHWM"])
        _trim()
        rss = _status_kb("VmRSS").get("VmRSS", now["VmRSS"])
        with self._lock:
            self._hwm, self._seen = now["VmHWM"], rss
        return {"rss_gb": now["VmRSS"] / 2**20, "peak_gb": peak / 2**20}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> StageMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _trim() -> None:
    """Collect garbage and hand glibc's freed arenas back to the OS (it keeps them otherwise)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
