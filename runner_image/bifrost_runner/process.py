"""How a runner process starts and ends: its own logging, the execution its environment describes, and leaving
without waiting for threads. Used by `python -m bifrost_runner` and by the forks of the template (`zygote`)."""

from __future__ import annotations

import logging
import os
import sys

from bifrost._internal.protocol import RUNNER_EXIT_BAD_CONFIG, RunPayload
from bifrost_runner.config import RunnerConfig, RunnerConfigError
from bifrost_runner.confinement import Confinement
from bifrost_runner.connection import ReadyConnection
from bifrost_runner.run import Preconnected, run_execution


def configure_runner_logging() -> None:
    """The runner's own messages go to its stderr, never into the execution's log. Once per process (a runner
    forked from the template finds it done): setting a level walks every logger there is."""
    log = logging.getLogger("bifrost_runner")
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s bifrost-runner: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


async def run_from_env(
    preconnected: Preconnected | None = None,
    payload: RunPayload | None = None,
    confinement: Confinement | None = None,
    ready: ReadyConnection | None = None,
) -> int:
    """Run the execution the environment describes, over the connections in `preconnected` and `ready` where
    they fit; `payload` is the execution's, when the backend handed it over (else it is fetched). A confined runner (see
    `confinement`) seals itself once its workspace is checked out."""
    configure_runner_logging()
    try:
        config = RunnerConfig.from_env(os.environ)
    except RunnerConfigError as exc:
        logging.getLogger("bifrost_runner").error("%s", exc)
        if preconnected is not None:
            await preconnected.close()
        if ready is not None:
            await ready.close()
        return RUNNER_EXIT_BAD_CONFIG
    return await run_execution(config, preconnected, payload, confinement, ready)


def exit_now(code: int) -> None:
    """Flush and leave without waiting for threads: a sync workflow that was cancelled or timed out may still be
    running in one, and the execution is over."""
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(code)
