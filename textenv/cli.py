"""How every textenv command runs (``python -m agents.ppo``, ``evals.run``, the benchmarks...).

A user error (a bad flag value, a missing file, an unknown env id) is one line on stderr and exit
code 2, as argparse does for a malformed flag; a bug still shows its traceback (:func:`cli`).

A command declares one config dataclass whose fields are made with :func:`arg` (default + help
text); :func:`parse_config` builds the argparse parser from it, so the CLI, its ``--help`` and the
Python API never drift apart. ``--preset NAME`` starts from a named instance; flags given on the
command line override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["RunFailed", "arg", "cli", "given_fields", "parse_config"]

T = TypeVar("T")


class RunFailed(RuntimeError):
    """A run that ended without the result it exists for (a training run whose every iteration was
    skipped): one line on stderr and exit code 1, with nothing written that a later stage could
    take for a result."""


def cli(main: Any, argv: Sequence[str] | None = None) -> None:
    """Run an entry point's ``main`` as a command: a user error (a bad value, a missing file) is one
    line on stderr and exit code 2, not a traceback; ``--debug`` (or ``TEXTENV_DEBUG=1``) re-raises
    to show it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("TEXTENV_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    try:
        code = main(argv)
    except RunFailed as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as exc:  # noqa: BLE001 - sorted below: user errors get one line, bugs a traceback
        user_error = isinstance(exc, (ValueError, TypeError, OSError)) or type(exc).__module__ == "gymnasium.error"
        if debug or not user_error:
            raise
        print(f"error: {type(exc).__name__}: {exc} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
    if isinstance(code, int) and code:
        raise SystemExit(code)


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
        return conv, {"nargs": "+", "action": "extend"}  # --x a b and --x a --x b both give [a, b]
    if tp is bool:  # --flag alone means true; --flag false turns a preset's true off
        return _parse_bool, {"metavar": "BOOL", "nargs": "?", "const": True}
    return tp, {}


def _prog() -> str | None:
    """``python -m agents.ppo`` in usage lines, not argparse's ``ppo.py``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    return f"python -m {name.removesuffix('.__main__')}" if name else None


def _literal(text: str) -> str:
    """``text`` as argparse shows it: argparse %-formats every help string (``%(default)s``), so a
    plain ``%`` ("~30% slower") breaks ``--help``; doubled, it prints as written."""
    return text.replace("%", "%%")


def _is_tuple(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_tuple(a) for a in typing.get_args(tp))
    return typing.get_origin(tp) is tuple


def _parser(cls: type, presets: Mapping[str, Any] | None, description: str | None,
            prog: str | None) -> argparse.ArgumentParser:
    """The command line of the dataclass ``cls``: a ``--flag`` per field, each defaulting to
    ``SUPPRESS`` so that only the flags given reach the namespace."""
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(
        prog=prog or _prog(),
        description=description or (cls.__doc__ or "").strip().splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), default=None,
                            help="start from a named preset; flags override its fields")
    for f in dataclasses.fields(cls):
        conv, extra = _converter(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})"
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=conv, default=argparse.SUPPRESS,
                            help=_literal(help_text), **extra)
    return parser


def given_fields(cls: type, argv: Sequence[str], presets: Mapping[str, Any] | None = None) -> set[str]:
    """The fields of ``cls`` that ``argv`` sets, read by the same parser as :func:`parse_config`
    (abbreviated and ``--flag=value`` forms included), ``--preset`` not counted."""
    ns = vars(_parser(cls, presets, None, None).parse_args(argv))
    return set(ns) - ({"preset"} if presets else set())


def parse_config(cls: type[T], argv: Sequence[str] | None = None,
                 presets: Mapping[str, T] | None = None, description: str | None = None,
                 prog: str | None = None) -> T:
    """Parse ``argv`` into an instance of the dataclass ``cls`` (``--preset`` picks the base)."""
    hints = typing.get_type_hints(cls)
    parser = _parser(cls, presets, description, prog)
    ns = vars(parser.parse_args(argv))
    preset = ns.pop("preset", None) if presets else None  # without presets, a "preset" field is a plain field
    for name, value in ns.items():  # a sequence flag replaces the preset's value, in the field's own type
        if isinstance(value, list) and _is_tuple(hints[name]):
            ns[name] = tuple(value)
    base = presets[preset] if preset else cls()
    return dataclasses.replace(base, **ns)
