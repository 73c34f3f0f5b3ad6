"""Secret values the workflow read are masked in what leaves the runner: logs, variables, the result."""

from __future__ import annotations

import threading
from typing import Any

MASK = "********"


class Redactor:
    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        # Very short values would mask common text everywhere; a secret is never that short in practice.
        if len(secret) >= 4:
            with self._lock:
                # Longest first, so a secret containing another is masked whole.
                self._secrets = tuple(sorted({*self._secrets, secret}, key=len, reverse=True))

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string redacted (keys included)."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(key)): self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value
