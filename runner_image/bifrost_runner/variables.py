"""The workflow's local variables at its return or exception, for troubleshooting."""

from __future__ import annotations

import json
import sys
from types import CodeType, FrameType, ModuleType
from typing import Any

from bifrost_runner.redaction import Redactor

MAX_VALUE_CHARS = 4096
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


def _presentable(value: object) -> Any:
    """The value itself when it is small JSON, else its (shortened) repr."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        pass
    else:
        if len(text) <= MAX_VALUE_CHARS:
            return json.loads(text)
    try:
        text = repr(value)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}>"
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[:MAX_VALUE_CHARS]}… [{len(text) - MAX_VALUE_CHARS:,} more characters]"
    return text


def capture_variables(frame: FrameType, excluded: set[str], redactor: Redactor) -> dict[str, Any]:
    """The frame's locals, without `excluded` (the parameters), `_private` names, callables and modules."""
    variables: dict[str, Any] = {}
    total = 0
    for name, value in frame.f_locals.items():
        if not _is_captured(name, value, excluded):
            continue
        presentable = redactor.value(_presentable(value))
        total += len(json.dumps(presentable))
        if total > MAX_TOTAL_CHARS:
            variables[name] = f"<omitted: the variables exceed {MAX_TOTAL_CHARS // 1024} KB>"
            continue
        variables[name] = presentable
    return variables
