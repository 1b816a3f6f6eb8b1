"""What the learners share besides their configs' CLI: run and output directories, saved configs and
the range checks of their numeric fields.

The dataclass -> ``--help`` CLI (:func:`textenv.cli.arg`, :func:`textenv.cli.parse_config`) lives in
:mod:`textenv.cli`, where every package's commands can use it; import it from there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from textenv.io import atomic_write, ensure_replaceable, remove_stale

__all__ = ["STALE_AFTER_S", "check_numbers", "prepare_out", "run_dir", "save_config"]

# A temporary folder untouched this long belongs to a killed write, not a live one: a checkpoint's
# temporary folder is written in seconds to minutes, then renamed away.
STALE_AFTER_S = 3600.0

def run_dir(root: str | Path, env_id: str, name: str, seed: int) -> Path:
    """``<root>/<env>__<name>__<seed>__<unix time>``, as cleanrl names runs, created exclusively: a
    second run started in the same second (a sweep launched with ``&``) gets ``...-1``, ``-2``...
    instead of sharing the folder. ``name`` must be a plain name: the run stays under ``root``."""
    for part, what in ((env_id, "env id"), (name, "exp_name")):
        if not part or "/" in part or "\\" in part or part in (".", "..") or part.startswith("."):
            raise ValueError(f"{what} {part!r} must be a plain name (no path separators, not hidden)")
    Path(root).mkdir(parents=True, exist_ok=True)
    stem = Path(root) / f"{env_id}__{name}__{seed}__{int(time.time())}"
    for k in range(1000):
        path = stem if k == 0 else stem.with_name(f"{stem.name}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free run directory name for {stem} after 1000 tries")


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` as JSON, atomically (a kill mid-write keeps the previous file)."""
    atomic_write(path, json.dumps(dataclasses.asdict(config), indent=2, default=str))


def check_numbers(config: Any, low: float, *names: str, above: bool = False, high: float | None = None) -> None:
    """Refuse a field of ``config`` among ``names`` that is not a finite number ``>= low`` (``> low``
    with ``above``; ``<= high`` when given): a one-line error naming the field, raised where the
    config is built (at parse time, before a model loads). ``None`` passes: in an optional field it
    names the default behaviour ("all epochs", "all examples"), which no number stands for."""
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (value > low if above else value >= low) and (high is None or value <= high))
        if not ok:
            bound = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise ValueError(f"{name} must be {bound}, got {value!r}")


def prepare_out(target: str | Path, sweep: bool = True) -> Path:
    """``target``, the folder a learner writes at its end (through :func:`textenv.io.atomic_dir`),
    checked before any work so that hours of training do not end in a refused write: it must be
    replaceable (:func:`textenv.io.ensure_replaceable`) and its nearest existing ancestor a folder
    that can take a new folder (probed with an empty one, removed at once; ``os.access`` says yes to
    root even on ``/proc``). ``sweep`` removes the temporary siblings (``.<name>.tmp-*``, about a
    model's size each) that killed writes left, once untouched for :data:`STALE_AFTER_S`: a run
    writing the same folder right now keeps its own. Pass ``sweep=False`` on all processes but one."""
    out = ensure_replaceable(target)
    base = out.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise NotADirectoryError(f"cannot write {out}: {base} is not a folder; choose another output path")
    try:
        Path(tempfile.mkdtemp(prefix=".textenv-probe-", dir=base)).rmdir()
    except OSError as exc:
        raise OSError(f"cannot write {out}: no folder can be created in {base} ({exc.strerror or exc}); "
                      "choose another output path") from None
    if sweep:
        remove_stale(out, older_than=STALE_AFTER_S)
    return out
