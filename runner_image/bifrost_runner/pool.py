"""`python -m bifrost_runner.pool`: a warm runner (a Kubernetes pool pod). It connects to NATS under its pool
identity, waits for one claim on its own subject, acknowledges it, then runs that one execution like
`python -m bifrost_runner` and exits. Waiting longer than `BIFROST_POOL_WAIT_SECONDS`, it exits without running
anything (the control plane recycles it sooner).

Environment: `BIFROST_NATS_URL`, `BIFROST_POOL_SUBJECT`, `BIFROST_POOL_WAIT_SECONDS`, and the pool identity
`BIFROST_POOL_NATS_JWT` / `BIFROST_POOL_NATS_SEED` (both or neither), besides the settings every run of the pool
shares (API URL, workspace); the claim adds the execution's own (id, token, NATS identity, timeout).
"""

from __future__ import annotations

import contextlib
import logging
import os

import uvloop
from nats.errors import TimeoutError as NatsTimeoutError

from bifrost._internal.protocol import PoolClaim
from bifrost_runner.connection import NatsIdentity, connect_nats
from bifrost_runner.process import configure_runner_logging, exit_now, run_from_env
from bifrost_runner.run import preconnect, rehearse

log = logging.getLogger("bifrost_runner")

POOL_ENV = ("BIFROST_POOL_SUBJECT", "BIFROST_POOL_WAIT_SECONDS", "BIFROST_POOL_NATS_JWT", "BIFROST_POOL_NATS_SEED")


async def wait_for_claim(env: dict[str, str]) -> PoolClaim | None:
    """The claim sent to this runner; None when none came in time."""
    wait_seconds = float(env["BIFROST_POOL_WAIT_SECONDS"])
    jwt, seed = env.get("BIFROST_POOL_NATS_JWT"), env.get("BIFROST_POOL_NATS_SEED")
    identity = NatsIdentity(jwt, seed) if jwt and seed else None
    nc = await connect_nats(env["BIFROST_NATS_URL"], wait_seconds, identity)
    try:
        # At most one message: NATS itself refuses this subscription a second claim.
        subscription = await nc.subscribe(env["BIFROST_POOL_SUBJECT"], max_msgs=1)
        await nc.flush()
        log.info("waiting for a run")
        try:
            message = await subscription.next_msg(timeout=wait_seconds)
        except NatsTimeoutError:
            return None
        claim = PoolClaim.model_validate_json(message.data)
        await message.respond(b"")
        await nc.flush()
        return claim
    finally:
        await nc.close()


async def run_pool_runner() -> int:
    configure_runner_logging()
    preconnected = preconnect(os.environ["BIFROST_API_URL"])
    # As a local spare does: an execution's steps taken once before the claim, so the run finds them warm. A
    # failed rehearsal costs the run only its head start.
    with contextlib.suppress(Exception):
        await rehearse(preconnected)
    claim = await wait_for_claim(dict(os.environ))
    if claim is None:
        log.info("no claim came: exiting unused")
        await preconnected.close()
        return 0
    for name in POOL_ENV:
        os.environ.pop(name, None)
    os.environ.update(claim.env)
    return await run_from_env(preconnected, payload=claim.payload)


def main() -> int:
    return uvloop.run(run_pool_runner())


if __name__ == "__main__":
    exit_now(main())
