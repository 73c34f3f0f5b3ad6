"""`python -m bifrost_runner` as a real process, against a real nats-server and the runner API over HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta

import pytest

from bifrost._internal.protocol import RUNNER_EXIT_CODES, CancelRequest, ExecutionStatus, control_subject, message_id
from control_plane.security.nats_identities import AccountSigner
from tests.runner.conftest import Harness, logged


async def test_success_publishes_numbered_deduplicable_events(harness: Harness) -> None:
    harness.write("""
        from bifrost import workflow

        @workflow
        async def greet(name: str, times: int = 1):
            \"\"\"Say hello.\"\"\"
            return {"greeting": " ".join([f"hello {name}"] * times)}
    """)
    run = await harness.run("greet", parameters={"name": "Ada", "times": "2"})

    assert run.returncode == 0, run.stderr
    assert [stored.event.type for stored in run.events] == ["started", "variables", "result", "finished"]
    assert [stored.event.seq for stored in run.events] == [1, 2, 3, 4]
    execution_id = run.finished.execution_id
    assert [stored.msg_id for stored in run.events] == [message_id(execution_id, seq) for seq in (1, 2, 3, 4)]
    (started,) = run.of_type("started")
    assert started.pid is not None
    assert run.of_type("result")[0].result == {"greeting": "hello Ada hello Ada"}
    assert run.finished.status is ExecutionStatus.SUCCESS
    assert run.finished.error_type is None


async def test_resent_events_are_dropped_by_message_id(harness: Harness) -> None:
    harness.write("""
        from bifrost import workflow

        @workflow
        async def noop():
            return None
    """)
    run = await harness.run("noop")
    execution_id = run.finished.execution_id
    first = run.events[0]

    # What the runner does after a lost acknowledgement: the same event again, with the same id.
    ack = await harness.js.publish(
        f"bifrost.runs.{execution_id}.events",
        first.event.model_dump_json().encode(),
        headers={"Nats-Msg-Id": message_id(execution_id, 1)},
    )

    assert ack.duplicate
    assert len(await harness.events(execution_id)) == len(run.events)


async def test_success_false_completes_with_errors(harness: Harness) -> None:
    harness.write("""
        from bifrost import workflow

        @workflow
        async def partial():
            return {"success": False, "error": "2 of 5 licences could not be assigned"}
    """)
    run = await harness.run("partial")

    assert run.finished.status is ExecutionStatus.COMPLETED_WITH_ERRORS
    assert run.finished.error_message == "2 of 5 licences could not be assigned"
    assert run.of_type("result")[0].result == {"success": False, "error": "2 of 5 licences could not be assigned"}


async def test_exception_fails_with_the_authors_traceback(harness: Harness) -> None:
    harness.write("""
        from bifrost import workflow

        def lookup(key):
            return {}[key]

        @workflow
        async def broken():
            return lookup("missing-key")
    """)
    run = await harness.run("broken")

    finished = run.finished
    assert finished.status is ExecutionStatus.FAILED
    assert finished.error_type == "KeyError"
    assert finished.error_message == "'missing-key'"
    assert finished.traceback is not None
    assert 'flows.py", line 5, in lookup' in finished.traceback
    assert "bifrost_runner" not in finished.traceback
    assert run.of_type("result") == []


async def test_user_error_fails_with_its_message_and_no_traceback(harness: Harness) -> None:
    harness.write("""
        from bifrost import UserError, workflow

        @workflow
        async def assign(user: str):
            raise UserError(f"user {user} not found")
    """)
    run = await harness.run("assign", parameters={"user": "bob"})

    assert run.finished.status is ExecutionStatus.FAILED
    assert run.finished.error_type == "UserError"
    assert run.finished.error_message == "user bob not found"
    assert run.finished.traceback is None


async def test_import_error_of_the_module_fails_with_its_traceback(harness: Harness) -> None:
    harness.write("""
        import not_a_module_anywhere
    """)
    run = await harness.run("anything")

    assert run.finished.status is ExecutionStatus.FAILED
    assert run.finished.error_type == "ModuleNotFoundError"
    assert "not_a_module_anywhere" in (run.finished.traceback or "")


async def test_unknown_function_and_bad_parameters_fail_clearly(harness: Harness) -> None:
    harness.write("""
        from bifrost import workflow

        @workflow
        async def count(n: int):
            return n
    """)
    missing = await harness.run("cuont")
    invalid = await harness.run("count", parameters={"n": "many"})

    assert missing.finished.status is ExecutionStatus.FAILED
    assert missing.finished.error_message == "flows.py has no function 'cuont'"
    assert invalid.finished.status is ExecutionStatus.FAILED
    assert invalid.finished.error_type == "ParameterValidationError"
    assert "n:" in (invalid.finished.error_message or "")


async def test_result_that_is_not_json_fails_clearly(harness: Harness) -> None:
    harness.write("""
        import threading
        from bifrost import workflow

        @workflow
        async def lock():
            return {"lock": threading.Lock()}
    """)
    run = await harness.run("lock")

    assert run.finished.status is ExecutionStatus.FAILED
    assert run.finished.error_type == "ResultNotSerializable"
    assert "the workflow returned a dict that is not JSON-serialisable" in (run.finished.error_message or "")
    assert run.of_type("result") == []


async def test_a_10_mb_result_arrives_and_a_larger_one_fails(harness: Harness) -> None:
    harness.write("""
        from bifrost import workflow

        @workflow
        async def big(megabytes: int):
            return {"blob": "x" * (megabytes * 1024 * 1024 - 100)}
    """)
    ten = await harness.run("big", parameters={"megabytes": 10})
    eleven = await harness.run("big", parameters={"megabytes": 11})

    assert ten.finished.status is ExecutionStatus.SUCCESS, ten.finished.error_message
    assert len(ten.of_type("result")[0].result["blob"]) == 10 * 1024 * 1024 - 100
    assert eleven.finished.status is ExecutionStatus.FAILED
    assert eleven.finished.error_type == "ResultTooLarge"
    assert eleven.finished.error_message == "the result is 11.0 MB, over the limit of 10.0 MB"


async def test_logging_and_print_are_captured_in_order_with_levels(harness: Harness) -> None:
    harness.write("""
        import logging
        import sys
        from bifrost import workflow

        logger = logging.getLogger("flows.inventory")

        @workflow
        async def report():
            logging.info("root info")
            logger.warning("disk at %d%%", 91)
            print("printed", "line")
            print("to stderr", file=sys.stderr)
            logger.debug("not captured: below INFO")
            print("no newline at the end", end="")
            try:
                1 / 0
            except ZeroDivisionError:
                logger.exception("division failed")
            return None
    """)
    run = await harness.run("report")

    records = [(record.level, record.logger, record.message) for record in run.log_records]
    assert records[:5] == [
        ("INFO", "root", "root info"),
        ("WARNING", "flows.inventory", "disk at 91%"),
        ("INFO", "stdout", "printed line"),
        ("ERROR", "stderr", "to stderr"),
        ("ERROR", "flows.inventory", records[4][2]),
    ]
    assert records[4][2].startswith("division failed\nTraceback")
    assert "ZeroDivisionError" in records[4][2]
    assert records[5] == ("INFO", "stdout", "no newline at the end")
    assert len(records) == 6
    stamps = [record.ts for record in run.log_records]
    assert stamps == sorted(stamps)
    # Echoed to the runner's own stdout as well, for `kubectl logs`.
    assert "WARNING flows.inventory: disk at 91%" in run.stdout
    assert "INFO stdout: printed line" in run.stdout


async def test_100000_log_lines_arrive_in_batches_without_loss(harness: Harness) -> None:
    harness.write("""
        import logging
        from bifrost import workflow

        @workflow
        def chatty(lines: int):
            log = logging.getLogger("chatty")
            for i in range(lines):
                log.info("line %d", i)
            return lines
    """)
    run = await harness.run("chatty", parameters={"lines": 100_000})

    log_events = run.of_type("log")
    assert [record.message for record in run.log_records] == [f"line {i}" for i in range(100_000)]
    assert all(event.dropped == 0 for event in log_events)
    assert max(len(event.records) for event in log_events) <= 500
    assert len(log_events) < 1_000  # batched: a few hundred messages, not one per line


async def test_variables_are_the_workflows_locals(harness: Harness) -> None:
    harness.write("""
        import json
        from bifrost import workflow

        class Box:
            def __repr__(self):
                return "<Box>"

        @workflow
        async def inspectable(context, user: str):
            count = 3
            names = ["a", "b"]
            box = Box()
            _private = "hidden"
            helper = lambda: None
            module = json
            huge = "y" * 10_000
            return None

        @workflow
        async def failing():
            step = "charging"
            raise RuntimeError("card declined")
    """)
    returned = await harness.run("inspectable", parameters={"user": "ada"})
    raised = await harness.run("failing")

    variables = returned.of_type("variables")[0].variables
    assert set(variables) == {"count", "names", "box", "huge"}
    assert variables["count"] == 3
    assert variables["names"] == ["a", "b"]
    assert variables["box"] == "<Box>"
    assert variables["huge"].startswith("'yyyy")
    assert variables["huge"].endswith("more characters]")
    assert raised.of_type("variables")[0].variables == {"step": "charging"}


async def test_timeout_stops_the_workflow(harness: Harness) -> None:
    harness.write("""
        import asyncio
        from bifrost import workflow

        @workflow
        async def slow():
            waited = 0
            while True:
                await asyncio.sleep(0.05)
                waited += 1
    """)
    run = await harness.run("slow", timeout_seconds=1)

    assert run.finished.status is ExecutionStatus.TIMEOUT
    assert run.finished.error_message == "the workflow did not finish within its timeout of 1 s"
    assert run.of_type("variables")[0].variables["waited"] > 0


@pytest.mark.parametrize(
    ("body", "status", "exit_code"),
    [
        ("return {'done': True}", ExecutionStatus.SUCCESS, 0),
        ("return {'success': False, 'error': 'two hosts down'}", ExecutionStatus.COMPLETED_WITH_ERRORS, 10),
        ("raise RuntimeError('no such host')", ExecutionStatus.FAILED, 11),
    ],
)
async def test_the_exit_code_tells_the_reported_status(
    harness: Harness, body: str, status: ExecutionStatus, exit_code: int
) -> None:
    """Only a run that succeeded leaves a container or a Job that succeeded."""
    harness.write(f"""
        from bifrost import workflow

        @workflow
        def check():
            {body}
    """)
    run = await harness.run("check")

    assert run.finished.status is status
    assert run.returncode == exit_code == RUNNER_EXIT_CODES[status]


async def test_a_sync_workflow_that_ignores_its_timeout_does_not_hold_the_runner(harness: Harness) -> None:
    harness.write("""
        import time
        from bifrost import workflow

        @workflow
        def stuck():
            time.sleep(3600)
    """)
    run = await harness.run("stuck", timeout_seconds=1)

    assert run.returncode == RUNNER_EXIT_CODES[ExecutionStatus.TIMEOUT]
    assert run.finished.status is ExecutionStatus.TIMEOUT


async def _cancel_when_logged(harness: Harness, execution_id: str, text: str) -> None:
    await harness.events(execution_id, until=logged(text))
    request = CancelRequest(reason="stopped by Ada")
    await harness.nc.publish(control_subject(execution_id), request.model_dump_json().encode())


async def test_cancel_stops_an_async_workflow(harness: Harness) -> None:
    harness.write("""
        import asyncio
        from bifrost import workflow

        @workflow
        async def wait_forever():
            print("waiting")
            try:
                await asyncio.sleep(3600)
            finally:
                print("cleaned up")
    """)
    payload, token = harness.payload("wait_forever")
    process = await harness.start(payload.execution_id, token)
    await _cancel_when_logged(harness, payload.execution_id, "waiting")
    run = await harness.finish(process, payload.execution_id)

    assert run.finished.status is ExecutionStatus.CANCELLED
    assert run.finished.error_message == "stopped by Ada"
    assert [record.message for record in run.log_records] == ["waiting", "cleaned up"]


async def test_cancel_ends_the_runner_of_a_sync_workflow(harness: Harness) -> None:
    harness.write("""
        import time
        from bifrost import workflow

        @workflow
        def busy():
            print("working")
            time.sleep(3600)
    """)
    payload, token = harness.payload("busy")
    process = await harness.start(payload.execution_id, token)
    await _cancel_when_logged(harness, payload.execution_id, "working")
    run = await harness.finish(process, payload.execution_id)

    assert run.returncode == RUNNER_EXIT_CODES[ExecutionStatus.CANCELLED]
    assert run.finished.status is ExecutionStatus.CANCELLED


async def test_a_sync_workflow_runs_in_a_thread_with_its_context(harness: Harness) -> None:
    harness.write("""
        import threading
        from bifrost import context, workflow

        @workflow
        def who(context):
            return {
                "thread": threading.current_thread().name,
                "execution_id": context.execution_id,
                "proxy_org": context.org_id,
                "user": context.user.email,
            }
    """)
    payload, token = harness.payload("who")
    run = await harness.finish(await harness.start(payload.execution_id, token), payload.execution_id)

    assert run.of_type("result")[0].result == {
        "thread": "workflow",
        "execution_id": payload.execution_id,
        "proxy_org": "org-1",
        "user": "ada@example.com",
    }


async def test_workspace_packages_import_each_other(harness: Harness) -> None:
    harness.write("RATE = 0.2\n", file="shared/tax.py")
    harness.write("""
        from bifrost import workflow
        from shared.tax import RATE
        from .helpers import double

        @workflow
        async def price(amount: float):
            return double(amount) * (1 + RATE)
    """, file="billing/flows.py")
    harness.write("def double(x):\n    return 2 * x\n", file="billing/helpers.py")
    run = await harness.run("price", file="billing/flows.py", parameters={"amount": 10})

    assert run.of_type("result")[0].result == 24.0


async def test_results_arrive_when_nats_restarts_mid_run(harness: Harness) -> None:
    harness.write("""
        import asyncio
        from bifrost import workflow

        @workflow
        async def outlast():
            print("before")
            await asyncio.sleep(2)
            print("after")
            return "survived"
    """)
    payload, token = harness.payload("outlast")
    process = await harness.start(payload.execution_id, token)
    await harness.events(payload.execution_id, until=logged("before"))
    await asyncio.to_thread(harness.nats.restart, 1.0)
    run = await harness.finish(process, payload.execution_id)

    assert run.returncode == 0, run.stderr
    assert run.finished.status is ExecutionStatus.SUCCESS
    assert run.of_type("result")[0].result == "survived"
    assert [record.message for record in run.log_records] == ["before", "after"]
    assert [stored.event.seq for stored in run.events] == list(range(1, len(run.events) + 1))


async def test_context_helpers_reach_the_control_plane(harness: Harness) -> None:
    harness.api.secrets["smtp_password"] = "s3cr3t-value"
    harness.api.config["region"] = {"name": "eu-west"}
    harness.api.child_outcomes["child_ok"] = {"status": "Success", "result": {"n": 42}}
    harness.api.child_outcomes["child_bad"] = {"status": "Failed", "result": None, "error_message": "boom"}
    harness.write("""
        from bifrost import config, context, secrets, workflow, workflows

        @workflow
        async def parent():
            password = await secrets.get("smtp_password")
            print(f"using {password}")
            absent = await context.get_secret("nope")
            region = await config.get("region")
            child = await workflows.run("child_ok", n=1)
            started = await context.run_workflow("child_ok", wait=False, n=2)
            try:
                await workflows.run("child_bad")
            except Exception as exc:
                failure = str(exc)
            return {"absent": absent, "region": region, "child": child, "started": started, "failure": failure}
    """)
    payload, token = harness.payload("parent")
    run = await harness.finish(await harness.start(payload.execution_id, token), payload.execution_id)

    result = run.of_type("result")[0].result
    assert result["absent"] is None
    assert result["region"] == {"name": "eu-west"}
    assert result["child"] == {"n": 42}
    assert result["started"].startswith("child-")
    assert result["failure"].startswith("sub-workflow 'child_bad' (execution child-")
    assert result["failure"].endswith("ended Failed: boom")
    started = harness.api.children[result["started"]]
    assert (started.workflow, started.parameters, started.parent_execution_id) == (
        "child_ok", {"n": 2}, payload.execution_id
    )
    # The secret's value is masked wherever it would leave the runner.
    assert [record.message for record in run.log_records] == ["using ********"]
    assert "s3cr3t-value" not in json.dumps(run.of_type("variables")[0].variables)
    assert "s3cr3t-value" not in run.stdout


async def test_a_refused_token_fails_the_execution_clearly(harness: Harness) -> None:
    payload, _ = harness.payload("anything")
    process = await harness.start(payload.execution_id, "not-the-token")
    run = await harness.finish(process, payload.execution_id)

    assert run.finished.status is ExecutionStatus.FAILED
    assert run.finished.error_type == "PayloadUnavailable"
    assert "HTTP 401" in (run.finished.error_message or "")


async def test_missing_configuration_is_named(harness: Harness) -> None:
    env = harness.env("some-id", "token")
    del env["BIFROST_NATS_URL"]
    env["BIFROST_TIMEOUT_SECONDS"] = "soon"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bifrost_runner", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()

    assert process.returncode == 2
    assert "missing environment variable(s): BIFROST_NATS_URL" in stderr.decode()


async def test_half_a_nats_identity_is_named(harness: Harness) -> None:
    env = harness.env("some-id", "token")
    del env["BIFROST_NATS_SEED"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bifrost_runner", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()

    assert process.returncode == 2
    assert "BIFROST_NATS_JWT and BIFROST_NATS_SEED go together" in stderr.decode()


async def test_a_runner_whose_nats_identity_expired_is_refused_by_nats_and_gives_up_at_once(harness: Harness) -> None:
    payload, token = harness.payload("anything")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    expired = AccountSigner(harness.nats.account_seed).runner(payload.execution_id, an_hour_ago)
    env = harness.env(payload.execution_id, token) | {
        "BIFROST_NATS_JWT": expired.jwt,
        "BIFROST_NATS_SEED": expired.seed,
        # Far beyond the wait below: the runner ends because NATS refused it, not because its time ran out.
        "BIFROST_TIMEOUT_SECONDS": "3600",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bifrost_runner", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 120)

    assert process.returncode == 1
    assert "refused this runner's identity" in stderr.decode()
    assert "authorization violation" in stderr.decode().lower()
    assert f"cannot report execution {payload.execution_id}" in stderr.decode()
