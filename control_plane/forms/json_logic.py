"""Visibility conditions of form fields: a subset of JSON Logic (jsonlogic.com), checked when a form is saved and
evaluated here, never as Python or JavaScript.

The operators are `var`, `==`, `!=`, `===`, `!==`, `!`, `!!`, `and`, `or`, `if`, `<`, `<=`, `>`, `>=` and
`in`, each with the meaning json-logic-js gives it, so a page that evaluates a condition with json-logic-js
agrees with the server: `==` is JavaScript's loose equality, `and`/`or` return the value that decided, an empty
list is false, `<` and `<=` take a third value for "between". `var` reads one field by name, with an optional
default (`{"var": ["field", default]}`); paths into values are not supported.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

OPERATORS = ("var", "==", "!=", "===", "!==", "!", "!!", "and", "or", "if", "<", "<=", ">", ">=", "in")
MAX_NODES = 500
MAX_DEPTH = 32

_ARITY: dict[str, tuple[int, int | None]] = {
    "==": (2, 2),
    "!=": (2, 2),
    "===": (2, 2),
    "!==": (2, 2),
    "!": (1, 1),
    "!!": (1, 1),
    "and": (1, None),
    "or": (1, None),
    "if": (1, None),
    "<": (2, 3),
    "<=": (2, 3),
    ">": (2, 2),
    ">=": (2, 2),
    "in": (2, 2),
}


class RuleError(ValueError):
    """A condition that is not in the supported subset, or refers to what it may not."""


def fields_read(rule: Any, readable: Mapping[str, object]) -> set[str]:
    """The field names `rule` reads, after checking it is a well-formed condition of the subset that reads only
    names in `readable`; `RuleError` saying what is wrong otherwise."""
    read: set[str] = set()
    nodes = [0]

    def walk(node: Any, depth: int) -> None:
        nodes[0] += 1
        if nodes[0] > MAX_NODES:
            raise RuleError(f"the condition has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise RuleError(f"the condition nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            for item in node:
                walk(item, depth + 1)
            return
        if not isinstance(node, dict):
            return
        if len(node) != 1:
            raise RuleError(f"an operation is an object with exactly one operator, not {sorted(node)}")
        operator, args = next(iter(node.items()))
        if operator not in OPERATORS:
            raise RuleError(f"unknown operator {operator!r} (supported: {', '.join(OPERATORS)})")
        if operator == "var":
            read.add(_var_name(args, readable))
            if isinstance(args, list) and len(args) == 2:
                walk(args[1], depth + 1)
            return
        values = args if isinstance(args, list) else [args]
        least, most = _ARITY[operator]
        if len(values) < least or (most is not None and len(values) > most):
            expected = str(least) if least == most else f"{least} to {most}" if most else f"at least {least}"
            raise RuleError(f"{operator!r} takes {expected} values, not {len(values)}")
        for value in values:
            walk(value, depth + 1)

    walk(rule, 0)
    return read


def _var_name(args: Any, readable: Mapping[str, object]) -> str:
    name = args[0] if isinstance(args, list) and len(args) in (1, 2) else args
    if not isinstance(name, str) or not name:
        raise RuleError('"var" takes a field name, or a field name and a default: {"var": ["name", default]}')
    if name not in readable:
        known = ", ".join(sorted(readable)) or "none"
        raise RuleError(f"reads field {name!r}, which is not a field above this one (those are: {known})")
    return name


def evaluate(rule: Any, data: Mapping[str, Any]) -> Any:
    """The value of a checked rule (see `fields_read`) with the fields' values `data`."""
    if isinstance(rule, list):
        return [evaluate(item, data) for item in rule]
    if not isinstance(rule, dict):
        return rule
    operator, args = next(iter(rule.items()))
    if operator == "var":
        name, default = (args[0], args[1] if len(args) == 2 else None) if isinstance(args, list) else (args, None)
        return data[name] if name in data else evaluate(default, data)
    values = args if isinstance(args, list) else [args]
    lazy = _LAZY.get(operator)
    if lazy is not None:
        return lazy(values, data)
    return _EAGER[operator](*(evaluate(value, data) for value in values))


def truthy(value: Any) -> bool:
    """JSON Logic's truth: JavaScript's, except that an empty list is false."""
    if isinstance(value, list):
        return len(value) > 0
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def _and(values: list[Any], data: Mapping[str, Any]) -> Any:
    current = None
    for value in values:
        current = evaluate(value, data)
        if not truthy(current):
            return current
    return current


def _or(values: list[Any], data: Mapping[str, Any]) -> Any:
    current = None
    for value in values:
        current = evaluate(value, data)
        if truthy(current):
            return current
    return current


def _if(values: list[Any], data: Mapping[str, Any]) -> Any:
    index = 0
    while index < len(values) - 1:
        if truthy(evaluate(values[index], data)):
            return evaluate(values[index + 1], data)
        index += 2
    return evaluate(values[index], data) if index == len(values) - 1 else None


_LAZY: dict[str, Callable[[list[Any], Mapping[str, Any]], Any]] = {"and": _and, "or": _or, "if": _if}


# JavaScript's view of JSON values.


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


_JS_NUMBER = re.compile(r"[+-]?(Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)")
_JS_RADIX = {"0x": 16, "0o": 8, "0b": 2}
_JS_WHITESPACE = " \t\n\v\f\r\u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(
    chr(code) for code in range(0x2000, 0x200B)
)


def _to_number(value: Any) -> float:
    kind = _kind(value)
    if kind == "null":
        return 0.0
    if kind in ("boolean", "number"):
        return float(value)
    if kind == "string":
        text = value.strip(_JS_WHITESPACE)
        if text == "":
            return 0.0
        radix = _JS_RADIX.get(text[:2].lower())
        if radix is not None:
            try:
                return float(int(text[2:], radix))
            except ValueError:
                return math.nan
        if _JS_NUMBER.fullmatch(text):
            return float(text.replace("Infinity", "inf"))
        return math.nan
    return _to_number(_to_primitive(value))


def _to_primitive(value: Any) -> Any:
    """A list or an object as JavaScript turns it into a primitive: its text."""
    return _to_string(value) if _kind(value) == "object" else value


def _to_string(value: Any) -> str:
    kind = _kind(value)
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "number":
        return _number_text(float(value)) if isinstance(value, float) else str(value)
    if kind == "string":
        return str(value)
    if isinstance(value, list):
        return ",".join("" if item is None else _to_string(item) for item in value)
    return "[object Object]"


def _number_text(number: float) -> str:
    """`Number.prototype.toString()`: the shortest digits that round-trip, placed as JavaScript places them."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    exact = decimal.Decimal(repr(abs(number))).normalize()
    digits = "".join(str(digit) for digit in exact.as_tuple().digits)
    exponent = exact.as_tuple().exponent
    assert isinstance(exponent, int)
    k, n = len(digits), len(digits) + exponent
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = f"0.{'0' * -n}{digits}"
    else:
        power = n - 1
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{'+' if power >= 0 else '-'}{abs(power)}"
    return sign + text


def _loose_equal(a: Any, b: Any) -> bool:
    kind_a, kind_b = _kind(a), _kind(b)
    if kind_a == kind_b:
        return _strict_equal(a, b)
    if "null" in (kind_a, kind_b):
        return False
    if kind_a == "boolean":
        return _loose_equal(_to_number(a), b)
    if kind_b == "boolean":
        return _loose_equal(a, _to_number(b))
    if {kind_a, kind_b} == {"number", "string"}:
        return _to_number(a) == _to_number(b)
    if kind_a == "object":
        return _loose_equal(_to_primitive(a), b)
    return _loose_equal(a, _to_primitive(b))


def _strict_equal(a: Any, b: Any) -> bool:
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == "object":
        return a is b
    if kind == "number":
        return float(a) == float(b)
    return bool(a == b)


def _less(a: Any, b: Any) -> bool:
    a, b = _to_primitive(a), _to_primitive(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.encode("utf-16-be") < b.encode("utf-16-be")  # JavaScript compares UTF-16 code units
    return _to_number(a) < _to_number(b)


def _less_or_equal(a: Any, b: Any) -> bool:
    a, b = _to_primitive(a), _to_primitive(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.encode("utf-16-be") <= b.encode("utf-16-be")
    return _to_number(a) <= _to_number(b)


def _between(compare: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    """`<` and `<=`: of two values, or whether the middle one of three lies between the others."""

    def operator(*values: Any) -> bool:
        if len(values) == 2:
            return compare(values[0], values[1])
        return compare(values[0], values[1]) and compare(values[1], values[2])

    return operator


def _in(a: Any, b: Any) -> bool:
    if isinstance(b, str):
        return b != "" and _to_string(a) in b
    if isinstance(b, list):
        return any(_strict_equal(a, item) for item in b)
    return False


_EAGER: dict[str, Callable[..., Any]] = {
    "==": _loose_equal,
    "!=": lambda a, b: not _loose_equal(a, b),
    "===": _strict_equal,
    "!==": lambda a, b: not _strict_equal(a, b),
    "!": lambda a: not truthy(a),
    "!!": truthy,
    "<": _between(_less),
    "<=": _between(_less_or_equal),
    ">": lambda a, b: _less(b, a),
    ">=": lambda a, b: _less_or_equal(b, a),
    "in": _in,
}
