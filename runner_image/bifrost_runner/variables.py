"""The workflow's local variables at its return or exception, for troubleshooting."""

from __future__ import annotations

import itertools
import json
import reprlib
import sys
from collections.abc import Collection
from types import CodeType, FrameType, ModuleType
from typing import Any

from bifrost._internal.redaction import Redactor

MAX_VALUE_CHARS = 4096
MAX_ITEMS = 10
"""Items shown per container; with three levels, a repr looks at a thousand values at most."""
MAX_NESTED_CHARS = 200
MAX_TOTAL_CHARS = 256 * 1024


class FrameCatcher:
    """Keeps the frame of the first call of `code` in the thread that installs it.

    Holding the frame object keeps its locals readable after the function has returned or raised. The profile
    hook removes itself at that first call, so the workflow itself runs without it.
    """

    def __init__(self, code: CodeType) -> None:
        self._code = code
        self.frame: FrameType | None = None

    def install(self) -> None:
        sys.setprofile(self._profile)

    def uninstall(self) -> None:
        if sys.getprofile() == self._profile:
            sys.setprofile(None)

    def _profile(self, frame: FrameType, event: str, _arg: object) -> None:
        if event == "call" and frame.f_code is self._code:
            self.frame = frame
            sys.setprofile(None)


def _is_captured(name: str, value: object, excluded: set[str]) -> bool:
    return not (name in excluded or name.startswith("_") or callable(value) or isinstance(value, ModuleType))


class _BoundedRepr(reprlib.Repr):
    """A repr that looks at a bounded part of a value, whatever its size: so many items per container, so many
    levels, so many characters per string. Containers are shown in their own order: sorting them, as
    `reprlib` does for dicts and sets, would read them whole. Strings are redacted before they are cut, so a
    cut never leaves part of a secret."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxarray = self.maxdict = MAX_ITEMS
        self.maxset = self.maxfrozenset = self.maxdeque = MAX_ITEMS
        self.maxstring = self.maxother = MAX_NESTED_CHARS
        self.maxlong = MAX_NESTED_CHARS

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [
            f"{self.repr1(key, level - 1)}: {self.repr1(x[key], level - 1)}" for key in itertools.islice(x, MAX_ITEMS)
        ]
        return "{" + ", ".join(items) + (", ..." if len(x) > MAX_ITEMS else "") + "}"

    def repr_set(self, x: set[Any], level: int) -> str:
        return self._repr_unsorted(x, level, "{", "}", "set()")

    def repr_frozenset(self, x: frozenset[Any], level: int) -> str:
        return self._repr_unsorted(x, level, "frozenset({", "})", "frozenset()")

    def _repr_unsorted(self, x: Collection[Any], level: int, left: str, right: str, empty: str) -> str:
        if not x:
            return empty
        if level <= 0:
            return f"{left}...{right}"
        items = [self.repr1(item, level - 1) for item in itertools.islice(x, MAX_ITEMS)]
        return left + ", ".join(items) + (", ..." if len(x) > MAX_ITEMS else "") + right

    def repr_str(self, x: str, level: int) -> str:
        return _shortened_str(x, self.maxstring, self._redactor)

    def repr_instance(self, x: object, level: int) -> str:
        try:
            text = repr(x)
        except Exception as exc:
            return f"<{type(x).__name__}: repr failed: {type(exc).__name__}>"
        head, covered = self._redactor.head(text, self.maxother)
        return head if covered == len(text) else f"{head}..."

    def repr_bytes(self, x: bytes, level: int) -> str:
        return _cut(repr(x[: self.maxstring]), len(x) - self.maxstring, "bytes")

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        return _cut(repr(x[: self.maxstring]), len(x) - self.maxstring, "bytes")


def _cut(text: str, more: int, unit: str) -> str:
    return f"{text}… [{more:,} more {unit}]" if more > 0 else text


def _shortened_str(text: str, limit: int, redactor: Redactor) -> str:
    head, covered = redactor.head(text, limit)
    return _cut(repr(head), len(text) - covered, "characters")


def _small_json(value: object, budget: int = MAX_VALUE_CHARS) -> bool:
    """Whether `value` is JSON (str, number, bool, None, lists, dicts with str keys) of about `budget` characters
    at most, found without looking at more of it than that."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            budget -= len(item) + 2
        elif item is None or isinstance(item, bool | int | float):
            budget -= 8
        elif isinstance(item, list | tuple):
            budget -= 2 + len(item)
            if budget >= 0:
                pending.extend(item)
        elif isinstance(item, dict):
            budget -= 2 + 4 * len(item)
            if budget >= 0:
                if not all(isinstance(key, str) for key in item):
                    return False
                pending.extend(item)
                pending.extend(item.values())
        else:
            return False
        if budget < 0:
            return False
    return True


def _presentable(value: object, redactor: Redactor) -> Any:
    """The value itself when it is small JSON, else a bounded, redacted repr of it."""
    if _small_json(value):
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            if len(text) <= MAX_VALUE_CHARS:
                return json.loads(text)
    if isinstance(value, str):
        return _shortened_str(value, MAX_VALUE_CHARS, redactor)
    try:
        text = _BoundedRepr(redactor).repr(value)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}>"
    head, covered = redactor.head(text, MAX_VALUE_CHARS)
    return _cut(head, len(text) - covered, "characters")


def capture_variables(frame: FrameType, excluded: set[str], redactor: Redactor) -> dict[str, Any]:
    """The frame's locals, without `excluded` (the parameters), `_private` names, callables and modules."""
    variables: dict[str, Any] = {}
    total = 0
    for name, value in frame.f_locals.items():
        if not _is_captured(name, value, excluded):
            continue
        presentable = redactor.value(_presentable(value, redactor))
        total += len(json.dumps(presentable))
        if total > MAX_TOTAL_CHARS:
            variables[name] = f"<omitted: the variables exceed {MAX_TOTAL_CHARS // 1024} KB>"
            continue
        variables[name] = presentable
    return variables
