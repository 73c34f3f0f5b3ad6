"""Making what a workflow reports storable: JSON that every database keeps and every answer carries back.

The rules, applied by the runner to a workflow's result, variables, log records and error before it publishes
them, and by the control plane again to every event it stores:

- in text (values and object keys), NUL characters and unpaired surrogates (`\\ud800`-`\\udfff`) become U+FFFD,
  the replacement character; a surrogate pair is joined into the character it encodes;
- NaN and the infinities become null;
- a list or object nested deeper than the limit is replaced by the text `<cut: nested deeper than N levels>`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

REPLACEMENT = "\ufffd"
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
# In JSON text, a NUL can only come escaped and a number that is not finite only as these words. (An unpaired
# surrogate cannot be written as UTF-8 at all, and JSON parsers refuse its escape.)
ESCAPED_NUL = b"\\u0000"


def may_be_unstorable(data: bytes) -> bool:
    """Whether JSON text may hold a NUL or a number that is not finite: cheap, so that healthy values need not
    be walked value by value."""
    return ESCAPED_NUL in data or b"NaN" in data or b"Infinity" in data


def nests_deeper(value: Any, max_depth: int) -> bool:
    """Whether a JSON value has lists or objects nested deeper than `max_depth` levels."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(max_depth):
        level = [
            item
            for container in level
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, dict | list)
        ]
    return bool(level)


def cut_marker(max_depth: int) -> str:
    return f"<cut: nested deeper than {max_depth} levels>"


def storable_text(text: str) -> str:
    if _NOT_TEXT.search(text) is None:
        return text
    text = text.replace("\x00", REPLACEMENT)
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@dataclass
class Storable:
    """Makes values storable (see the module's rules), noting in `repairs` what it had to change."""

    max_depth: int
    repairs: set[str] = field(default_factory=set)
    _path: set[int] = field(default_factory=set)
    """The containers being made storable, outer ones first: one met again contains itself."""

    def text(self, text: str) -> str:
        repaired = storable_text(text)
        if repaired is not text:
            self.repairs.add("text with NUL characters or unpaired surrogates")
        return repaired

    def value(self, value: Any) -> Any:
        """`value` made storable; tuples and sets become lists, other values that are not JSON's (a datetime, an
        object) are left as they are. A value that contains itself is refused with a ValueError."""
        return self._value(value, self.max_depth)

    def _value(self, value: Any, depth_left: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, float) and not math.isfinite(value):
            self.repairs.add("numbers that are not finite")
            return None
        if isinstance(value, dict | list | tuple | set | frozenset):
            if depth_left <= 0:
                self.repairs.add(f"nesting deeper than {self.max_depth} levels")
                return cut_marker(self.max_depth)
            if id(value) in self._path:
                raise ValueError("circular reference: the value contains itself")
            self._path.add(id(value))
            try:
                if not isinstance(value, dict):
                    return [self._value(item, depth_left - 1) for item in value]
                return {
                    self.text(key) if isinstance(key, str) else key: self._value(item, depth_left - 1)
                    for key, item in value.items()
                }
            finally:
                self._path.discard(id(value))
        return value
