"""`python -m bifrost_runner`: run the one execution the environment describes, then exit."""

from __future__ import annotations

import uvloop

from bifrost_runner.process import exit_now, run_from_env


def main() -> int:
    return uvloop.run(run_from_env())


if __name__ == "__main__":
    exit_now(main())
