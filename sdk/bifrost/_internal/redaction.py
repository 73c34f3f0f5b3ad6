"""Masking secret values: shared by the runner, which masks what leaves it, and the control plane, which masks
what it keeps of a runner's output that the runner could not mask itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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

    def head(self, text: str, limit: int) -> tuple[str, int]:
        """The redacted beginning of `text`, of at most `limit` of its characters, and how many it covers: a
        secret the cut would go through is left out whole, never shown in part. Looks at no more of `text` than
        the cut and the secrets' length need."""
        if len(text) <= limit:
            return self.text(text), len(text)
        cut, moved = limit, True
        while moved:
            moved = False
            for secret in self._secrets:
                start = text.find(secret, max(0, cut - len(secret) + 1), cut + len(secret) - 1)
                if start != -1 and start < cut:
                    cut, moved = start, True
        return self.text(text[:cut]), cut

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

    def found_in(self, value: Any) -> list[str]:
        """The secrets that occur in the strings (keys included) of a JSON-like value."""
        strings = list(_strings(value))
        return [secret for secret in self._secrets if any(secret in text for text in strings)]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
