"""Run every benchmark module of this package in turn (each defines `main()`, which prints its figures), each in
a process of its own: a memory figure must not count what an earlier benchmark left in the process."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import bench


def main() -> int:
    modules = sorted(info.name for info in pkgutil.iter_modules(bench.__path__) if not info.name.startswith("_"))
    failed = []
    for name in modules:
        print(f"== bench.{name}", flush=True)
        # One broken benchmark must not hide the figures of the others.
        if subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode != 0:
            failed.append(name)
            print(f"bench.{name} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
