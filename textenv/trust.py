"""Code named in a saved file runs only when the user asks for it.

A reward (``"pkg.mod:fn"``), an env id (``"pkg.mod:Env-v0"``) or a task (``"pkg.mod:factory"``)
given on the command line imports and runs that module: the user typed it. The same string read
back from a run folder's ``config.json`` (``--resume``) was typed by whoever wrote the folder, so a
config that names code anywhere (a string, a mapping's key or value, a list element, nested) is
refused unless ``--trust-config-code`` says the folder is trusted.

>>> code_references({"reward": {"my.mod:fn": 1.0, "rougeL": 0.5}, "env": "TextCount-v0"})
['reward: my.mod:fn']
>>> code_references({"device": "cuda:0", "runs": "/tmp/x"})
[]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["code_references", "refuse_config_code"]

# "pkg.mod:attr" as importlib and Gymnasium read it: identifiers on both sides of one colon; the
# right side may be dotted or end in a version ("Env-v0"). "cuda:0" or a path is not a reference.
_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.\-]*$")


def code_references(value: Any, where: str = "") -> list[str]:
    """Every importable ``"module:attr"`` string in ``value``, at any depth, as ``"path: string"``."""
    found: list[str] = []
    if isinstance(value, str):
        if _REFERENCE.match(value):
            found.append(f"{where or '.'}: {value}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found += code_references(key, where) if isinstance(key, str) else []  # {"pkg.mod:fn": weight}
            found += code_references(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            found += code_references(item, f"{where}[{i}]")
    return found


def refuse_config_code(saved: Mapping[str, Any], source: str, trusted: bool) -> None:
    """Raise a one-line ``PermissionError`` when ``saved`` (a config read from ``source``) names code
    to import and the user has not trusted it with ``--trust-config-code``."""
    found = code_references(saved)
    if found and not trusted:
        raise PermissionError(f"{source} names code to import ({'; '.join(found)}); importing runs that code, so "
                              "pass --trust-config-code only if you trust where this file came from")
