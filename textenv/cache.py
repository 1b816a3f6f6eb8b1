"""Where textenv keeps what it builds once: converted models, trained classifiers.

``$TEXTENV_CACHE`` overrides the default ``~/.cache/textenv`` (tests point it at a temp dir).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """Return ``$TEXTENV_CACHE/<parts>`` (default ``~/.cache/textenv``), created if missing."""
    root = Path(os.environ.get("TEXTENV_CACHE", Path.home() / ".cache" / "textenv")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
