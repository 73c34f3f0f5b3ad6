"""`python -m bifrost_runner`: run the one execution the environment describes, then exit.

The exit code tells how the execution ended (`bifrost._internal.protocol`): 0 Success, 10 CompletedWithErrors,
11 Failed, 12 Timeout, 13 Cancelled, once the runner reported it; 1 when it could not report; 2 when its environment
is incomplete or malformed. Only a run that succeeded leaves a container or a Job that succeeded."""

from __future__ import annotations

import uvloop

from bifrost_runner.process import exit_now, run_from_env


def main() -> int:
    return uvloop.run(run_from_env())


if __name__ == "__main__":
    exit_now(main())
