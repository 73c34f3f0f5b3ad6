"""The runner. Importing the package imports the HTTP and NATS clients without the optional parts of theirs a runner
never uses: httpx's command line (rich, click, pygments) and the NATS client's WebSocket transport (aiohttp; runners
reach NATS over its own protocol). That is 11 MB less in every runner, and in the local backend's runner template,
whose forks cost the more, the more memory it has. A workflow that imports any of those itself gets them as usual."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType


class _LeftOut(importlib.abc.MetaPathFinder):
    """Makes the import of the modules `names` fail, as if they were not installed."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self.names:
            raise ModuleNotFoundError(f"{fullname} is left out of the runner", name=fullname)
        return None


def _import_without(module: str, *left_out: str) -> None:
    """Import `module` (unless it is imported already) as if the modules `left_out` were not installed."""
    if module in sys.modules:
        return
    finder = _LeftOut(frozenset(left_out))
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module(module)
    finally:
        sys.meta_path.remove(finder)


_import_without("httpx", "httpx._main")
_import_without("nats.aio.transport", "aiohttp")
