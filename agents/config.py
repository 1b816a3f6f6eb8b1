"""What the learners share besides their configs' CLI: run directories and saved configs.

The dataclass -> ``--help`` CLI (:func:`arg`, :func:`parse_config`) lives in :mod:`textenv.cli`,
where every package's commands can use it; it is re-exported here for the learners.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from textenv.cli import arg, cli, parse_config
from textenv.devices import resolve_device
from textenv.io import atomic_write

__all__ = ["arg", "cli", "parse_config", "resolve_device", "run_dir", "save_config"]

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

