"""Where textenv keeps what it builds once: converted models, trained classifiers.

``$TEXTENV_CACHE`` overrides the default ``~/.cache/textenv`` (tests point it at a temp dir).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "package_dir"]


def cache_dir(*parts: str) -> Path:
    """Return ``$TEXTENV_CACHE/<parts>`` (default ``~/.cache/textenv``), created if missing."""
    root = Path(os.environ.get("TEXTENV_CACHE", Path.home() / ".cache" / "textenv")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_dir(module: str, what: str, pip_spec: str) -> Path:
    """The directory of an installed package that ships data, found without importing it.

    Several of our data and model packages import heavy or missing dependencies in their
    ``__init__`` (llama_cpp, scikit-learn); ``find_spec`` locates them without running it.
    """
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{what} comes from the PyPI package {module}; install it with: pip install {pip_spec}"
        )
    return Path(spec.submodule_search_locations[0])
