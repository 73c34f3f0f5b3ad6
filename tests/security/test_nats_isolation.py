"""Runners on NATS, attacked from workflow code: a run of org B uses its own NATS identity (which its runner holds
in its environment) to read org A's events and to forge them. The NATS server refuses each attempt, and org A's
run ends as it really did."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import RawCredentials

from bifrost._internal.protocol import events_subject, nats_credentials_file, pool_subject
from control_plane.security.nats_identities import AccountSigner, NatsKeys
from tests.api.conftest import eventually, finished, fresh_database, running_bifrost, start
from tests.security.conftest import WORKFLOWS, Tenants, populate

NATS_FLOWS = """
import asyncio
import gc
import os

import nats
from nats.aio.client import Client, RawCredentials

from bifrost import config, workflow
from bifrost._internal.protocol import (
    ExecutionStatus,
    FinishedEvent,
    events_subject,
    inbox_prefix,
    nats_credentials_file,
)


@workflow
async def steady():
    while await config.get("gate") is None:
        await asyncio.sleep(0.1)
    return "the true result"


@workflow
async def snoop(victim: str):
    refused = []
    received = []

    async def on_error(exc):
        refused.append(str(exc))

    async def on_message(msg):
        received.append(msg.subject)

    own = os.environ["BIFROST_EXECUTION_ID"]
    credentials = nats_credentials_file(os.environ["BIFROST_NATS_JWT"], os.environ["BIFROST_NATS_SEED"])
    nc = await nats.connect(
        os.environ["BIFROST_NATS_URL"],
        user_credentials=RawCredentials(credentials),
        inbox_prefix=inbox_prefix(own),
        error_cb=on_error,
        allow_reconnect=False,
    )
    for subject in ("bifrost.runs.*.events", events_subject(victim), ">"):
        await nc.subscribe(subject, cb=on_message)
    forged = FinishedEvent(execution_id=victim, seq=1, status=ExecutionStatus.FAILED, error_message="forged by B")
    await nc.publish(events_subject(victim), forged.model_dump_json().encode())
    try:
        await nc.jetstream(timeout=3).add_consumer("BIFROST_EVENTS", durable_name="snoop")
        consumer = "created"
    except Exception as exc:
        consumer = f"refused: {type(exc).__name__}"
    for _ in range(400):
        if len(refused) >= 5:
            break
        await asyncio.sleep(0.05)
    await nc.close()
    return {"refused": refused, "received": received, "consumer": consumer}


@workflow
async def held(gate: str):
    while await config.get(gate) is None:
        await asyncio.sleep(0.1)
    return "the true result"


@workflow(execution_mode="sync")
async def snoop_through_the_runner(victim: str):
    # A sync run starts on a runner that connected to NATS while it waited, under an identity made ahead.
    (nc,) = [found for found in gc.get_objects() if isinstance(found, Client) and found.is_connected]
    received = []

    async def on_message(msg):
        received.append(msg.subject)

    for subject in ("bifrost.runs.*.events", events_subject(victim), ">"):
        await nc.subscribe(subject, cb=on_message)
    forged = FinishedEvent(execution_id=victim, seq=1, status=ExecutionStatus.FAILED, error_message="forged by B")
    await nc.publish(events_subject(victim), forged.model_dump_json().encode())
    await nc.flush()
    await asyncio.sleep(2)
    return {"received": received, "connected": nc.is_connected}
"""


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Tenants]:
    tmp: Path = tmp_path_factory.mktemp("nats-isolation")
    database_url = fresh_database("sqlite", tmp, request)
    with running_bifrost(tmp, database_url, {"security_flows.py": WORKFLOWS, "nats_flows.py": NATS_FLOWS}) as bifrost:
        with bifrost.client() as admin:
            eventually(
                lambda: {"steady", "snoop", "held", "snoop_through_the_runner"}
                <= {w["name"] for w in admin.get("/api/workflows").json()},
                what="the workflows to register",
            )
        yield populate(bifrost)


def test_a_run_of_another_org_can_neither_read_nor_forge_a_runs_events(tenants: Tenants) -> None:
    with tenants.client("member_a") as member_a, tenants.client("member_b") as member_b:
        victim = start(member_a, "steady")
        eventually(
            lambda: member_a.get(f"/api/executions/{victim}").json()["status"] == "Running",
            what="org A's run to start",
        )

        attack = finished(member_b, start(member_b, "snoop", victim=victim))

        assert attack["status"] == "Success", attack
        outcome: dict[str, Any] = attack["result"]
        refusals = "\n".join(outcome["refused"]).lower()
        for subject in ("bifrost.runs.*.events", events_subject(victim), ">"):
            assert f'permissions violation for subscription to "{subject}"' in refusals
        assert f'permissions violation for publish to "{events_subject(victim)}"' in refusals
        assert 'permissions violation for publish to "$js.api.consumer.durable.create.bifrost_events.snoop"' in refusals
        assert outcome["consumer"].startswith("refused"), outcome
        assert outcome["received"] == []

        with tenants.client("admin_a") as admin_a:
            assert admin_a.put("/api/config/gate", json={"value": "open"}).status_code == 200
        run = finished(member_a, victim)
        assert run["status"] == "Success", run
        assert run["result"] == "the true result"
        assert run["error"] is None


def test_a_sync_run_can_neither_read_nor_forge_a_runs_events_through_its_runners_connection(
    tenants: Tenants,
) -> None:
    with tenants.client("member_a") as member_a, tenants.client("member_b") as member_b:
        victim = start(member_a, "held", gate="held-gate")
        eventually(
            lambda: member_a.get(f"/api/executions/{victim}").json()["status"] == "Running",
            what="org A's run to start",
        )

        attack = member_b.post(
            "/api/workflows/snoop_through_the_runner/execute", json={"parameters": {"victim": victim}}
        ).json()

        assert attack["status"] == "Success", attack
        assert attack["result"] == {"received": [], "connected": True}
        with tenants.client("admin_a") as admin_a:
            assert admin_a.put("/api/config/held-gate", json={"value": "open"}).status_code == 200
        run = finished(member_a, victim)
        assert run["status"] == "Success", run
        assert run["result"] == "the true result"


def _connects(url: str, jwt: str, seed: str) -> bool:
    async def attempt() -> bool:
        try:
            nc = await nats.connect(
                url, user_credentials=RawCredentials(nats_credentials_file(jwt, seed)), allow_reconnect=False
            )
        except nats.errors.Error:
            return False
        await nc.close()
        return True

    return asyncio.run(attempt())


def test_an_expired_or_foreign_runner_identity_is_refused(tenants: Tenants) -> None:
    settings = tenants.bifrost.settings
    assert settings.nats_url is not None and settings.nats_account_seed is not None
    signer = AccountSigner(settings.nats_account_seed.get_secret_value())
    now = datetime.now(UTC)
    current = signer.runner("some-run", now + timedelta(minutes=5))
    expired = signer.runner("some-run", now - timedelta(seconds=1))
    foreign = AccountSigner(NatsKeys.generate().account).runner("some-run", now + timedelta(minutes=5))

    assert _connects(settings.nats_url, current.jwt, current.seed)
    assert not _connects(settings.nats_url, expired.jwt, expired.seed)
    assert not _connects(settings.nats_url, foreign.jwt, foreign.seed)
    assert not _connects(settings.nats_url, current.jwt, foreign.seed)


def test_a_pool_runner_identity_receives_its_own_claim_and_nothing_else(tenants: Tenants) -> None:
    settings = tenants.bifrost.settings
    assert settings.nats_url is not None and settings.nats_account_seed is not None
    url, signer = settings.nats_url, AccountSigner(settings.nats_account_seed.get_secret_value())
    pod = signer.pool_runner("bifrost-pool-a", datetime.now(UTC) + timedelta(minutes=5))
    control_plane = signer.control_plane()

    async def attempt() -> tuple[bytes, list[str]]:
        refused: list[str] = []

        async def on_error(exc: Exception) -> None:
            refused.append(str(exc).lower())

        waiting = await nats.connect(
            url, user_credentials=RawCredentials(nats_credentials_file(pod.jwt, pod.seed)), error_cb=on_error
        )
        claimer = await nats.connect(
            url, user_credentials=RawCredentials(nats_credentials_file(control_plane.jwt, control_plane.seed))
        )
        try:
            own = await waiting.subscribe(pool_subject("bifrost-pool-a"), max_msgs=1)
            # nats-py writes a flush's PING ahead of the commands its flusher still holds, so the first PONG does
            # not prove the server has the SUB; the second flush's PING is written after it.
            await waiting.flush()
            await waiting.flush()
            answer = asyncio.ensure_future(claimer.request(pool_subject("bifrost-pool-a"), b"the claim", timeout=5))
            claim = await own.next_msg(timeout=5)
            await claim.respond(b"taken")
            assert (await answer).data == b"taken"
            await waiting.subscribe(pool_subject("bifrost-pool-b"))
            await waiting.subscribe("bifrost.runs.*.events")
            await waiting.publish(events_subject("some-run"), b"forged")
            await waiting.flush()
            for _ in range(100):
                if len(refused) >= 3:
                    break
                await asyncio.sleep(0.05)
            return claim.data, refused
        finally:
            await waiting.close()
            await claimer.close()

    claim, refused = asyncio.run(attempt())

    assert claim == b"the claim"
    refusals = "\n".join(refused)
    assert f'permissions violation for subscription to "{pool_subject("bifrost-pool-b")}"' in refusals
    assert 'permissions violation for subscription to "bifrost.runs.*.events"' in refusals
    assert f'permissions violation for publish to "{events_subject("some-run")}"' in refusals
