"""The built-in ``calculator``: arithmetic evaluated over a whitelisted syntax tree, never ``eval``.

Only numbers, ``+ - * / // % **``, unary signs and parentheses parse into something it evaluates;
a name, a call, an attribute, a string or any other node is refused. Every value stays within
:data:`MAX_ABS` and a power is checked before it is computed, so ``9**9**9`` is an error in
microseconds, not minutes of big-integer arithmetic.
"""

from __future__ import annotations

import ast
import math
import operator

__all__ = ["MAX_ABS", "MAX_CHARS", "calculator"]

MAX_CHARS = 200
"""The longest expression, in characters (deep nesting is bounded by this too)."""
MAX_ABS = 10 ** 18
"""The largest magnitude of any value along the way."""

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_SYMBOLS = {ast.BitXor: "^ (write ** for a power)", ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<",
            ast.RShift: ">>", ast.MatMult: "@"}


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses, e.g. (12 + 3) * 4."""
    text = expression.replace("\u00d7", "*").replace("\u00f7", "/").replace("\u2212", "-").strip().rstrip("=").strip()
    if not text:
        raise ValueError("the expression is empty")
    if len(text) > MAX_CHARS:
        raise ValueError(f"the expression has {len(text)} characters; at most {MAX_CHARS}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ValueError(f"{text[:60]!r} is not an arithmetic expression") from None
    return _format(_eval(tree.body))


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ValueError(f"{node.value!r} is not a number")
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ValueError(f"the operator {_SYMBOLS.get(type(node.op), type(node.op).__name__)} is not supported")
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _bounded(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ValueError("division by zero") from None
        except OverflowError:
            raise ValueError("the result is too large") from None
    raise ValueError(f"{type(node).__name__} is not allowed: only numbers, + - * / // % ** and parentheses")


def _check_power(base: int | float, exponent: int | float) -> None:
    """Refuse a power whose result would pass :data:`MAX_ABS` before computing it."""
    if base == 0 and exponent < 0:
        raise ValueError("division by zero (0 to a negative power)")
    if base < 0 and not float(exponent).is_integer():
        raise ValueError("a negative number to a fractional power is not a real number")
    if abs(base) > 1 and exponent * math.log10(abs(base)) > math.log10(MAX_ABS):
        raise ValueError(f"the result is too large (more than {MAX_ABS:.0e})")
    if 0 < abs(base) < 1 and exponent < 0 and -exponent * -math.log10(abs(base)) > math.log10(MAX_ABS):
        raise ValueError(f"the result is too large (more than {MAX_ABS:.0e})")


def _bounded(value: int | float | complex) -> int | float:
    if isinstance(value, complex):
        raise ValueError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_ABS:
        raise ValueError(f"the result is too large (more than {MAX_ABS:.0e})")
    return value


def _format(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int) else f"{value:.10g}"
