"""Run every benchmark module of this package in turn (each defines `main()`, which prints its figures)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def main() -> int:
    modules = sorted(info.name for info in pkgutil.iter_modules(bench.__path__) if not info.name.startswith("_"))
    failed = []
    for name in modules:
        print(f"== bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        try:
            module.main()
        except Exception as exc:  # one broken benchmark must not hide the figures of the others
            failed.append(name)
            print(f"bench.{name} failed: {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
