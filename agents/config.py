"""Config dataclasses -> ``--help`` CLIs, presets as Python instances, and run directories.

Each entry point (PPO, SFT, reward model, pipeline) declares one dataclass whose fields are made
with :func:`arg` (default + help text). :func:`parse_config` builds an argparse parser from it, so
the CLI, its ``--help`` and the Python API never drift apart. ``--preset NAME`` starts from a named
instance; flags given on the command line override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from textenv.cli import cli
from textenv.devices import resolve_device
from textenv.io import atomic_write

__all__ = ["arg", "cli", "parse_config", "resolve_device", "run_dir", "save_config"]

T = TypeVar("T")


def arg(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse
    """A dataclass field with a default and the help text shown by ``--help``."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def _converter(tp: Any) -> tuple[Any, dict[str, Any]]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        conv, extra = _converter(args[0])
        return (lambda s: None if s.lower() == "none" else conv(s)), extra
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        return type(choices[0]), {"choices": choices}
    if origin in (list, tuple, Sequence):
        (inner,) = typing.get_args(tp)[:1] or (str,)
        conv, _ = _converter(inner)
        return conv, {"nargs": "*"}
    if tp is bool:
        return _parse_bool, {"metavar": "BOOL"}
    return tp, {}


def parse_config(cls: type[T], argv: Sequence[str] | None = None,
                 presets: Mapping[str, T] | None = None, description: str | None = None) -> T:
    """Parse ``argv`` into an instance of the dataclass ``cls`` (``--preset`` picks the base)."""
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(
        description=description or (cls.__doc__ or "").strip().splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), default=None,
                            help="start from a named preset; flags override its fields")
    for f in dataclasses.fields(cls):
        conv, extra = _converter(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=conv,
                            default=argparse.SUPPRESS, help=f"{f.metadata.get('help', '')} (default: {default!r})",
                            **extra)
    ns = vars(parser.parse_args(argv))
    preset = ns.pop("preset", None) if presets else None  # without presets, a "preset" field is a plain field
    base = presets[preset] if preset else cls()
    return dataclasses.replace(base, **ns)


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

