"""How every textenv command runs (``python -m agents.ppo``, ``evals.run``, the benchmarks...).

A user error (a bad flag value, a missing file, an unknown env id) is one line on stderr and exit
code 2, as argparse does for a malformed flag; a bug still shows its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["cli"]


def cli(main: Any, argv: Sequence[str] | None = None) -> None:
    """Run an entry point's ``main`` as a command: a user error (a bad value, a missing file) is one
    line on stderr and exit code 2, not a traceback; ``--debug`` (or ``TEXTENV_DEBUG=1``) re-raises
    to show it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("TEXTENV_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    try:
        code = main(argv)
    except Exception as exc:  # noqa: BLE001 - sorted below: user errors get one line, bugs a traceback
        user_error = isinstance(exc, (ValueError, TypeError, OSError)) or type(exc).__module__ == "gymnasium.error"
        if debug or not user_error:
            raise
        print(f"error: {type(exc).__name__}: {exc} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
    if isinstance(code, int) and code:
        raise SystemExit(code)
