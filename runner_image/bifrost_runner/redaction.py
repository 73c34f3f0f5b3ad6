"""Secret values the workflow read (or was passed by its parent) are masked in what leaves the runner: logs,
variables, the result, and the runner's own messages (see `bifrost._internal.redaction` for the masking itself)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from bifrost._internal.redaction import Redactor


class RedactingFilter(logging.Filter):
    """Masks secrets in the records a handler writes, their tracebacks included."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._redactor.text(record.getMessage()), None
        if record.exc_info:
            record.exc_text = self._redactor.text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self._redactor.text(record.stack_info)
        return True


@contextlib.contextmanager
def redacted_handlers(logger: logging.Logger, redactor: Redactor) -> Iterator[None]:
    """Mask secrets in what `logger`'s handlers write (the records of its child loggers too) for the block."""
    redacting = RedactingFilter(redactor)
    handlers = list(logger.handlers)
    for handler in handlers:
        handler.addFilter(redacting)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redacting)
