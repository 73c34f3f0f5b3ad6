"""The examples of the workflows concept page, as written there, run by a real runner."""

from __future__ import annotations

from bifrost._internal.protocol import ExecutionStatus
from tests.runner.conftest import Harness

CONCEPT_EXAMPLES = '''
import logging

from bifrost import context, workflow

logger = logging.getLogger(__name__)


async def do_work(param):
    raise ConnectionError(f"directory unreachable for {param}")


@workflow
async def create_user(email: str, name: str):
    """Create a new user in the system."""
    # Business logic here
    return {"user_id": "123"}


@workflow(name="process_items")
async def process_items(context, items: list):
    logger.info(f"Processing {len(items)} items")

    for i, item in enumerate(items):
        logger.info(f"Processing item {i+1}/{len(items)}")
        # Process item

    return {"processed": len(items)}


@workflow(name="example")
async def example(context, param: str):
    try:
        result = await do_work(param)
        return {"success": True, "result": result}
    except Exception as e:
        return {"success": False, "error": str(e)}


@workflow(name="admin_task")
async def admin_task():
    # Check permissions in the workflow
    if not context.is_platform_admin:
        return {"error": "Admin privileges required"}
    # Perform admin operation
    pass
'''


async def test_the_concept_pages_examples_run_as_written(harness: Harness) -> None:
    harness.write(CONCEPT_EXAMPLES)

    created = await harness.run("create_user", parameters={"email": "ada@example.com", "name": "Ada"})
    processed = await harness.run("process_items", parameters={"items": ["a", "b"]})
    failed_softly = await harness.run("example", parameters={"param": "x"})
    refused = await harness.run("admin_task")
    allowed = await harness.run("admin_task", is_platform_admin=True)

    assert created.of_type("result")[0].result == {"user_id": "123"}
    assert processed.of_type("result")[0].result == {"processed": 2}
    assert [(record.logger, record.message) for record in processed.log_records] == [
        ("flows", "Processing 2 items"),
        ("flows", "Processing item 1/2"),
        ("flows", "Processing item 2/2"),
    ]
    assert failed_softly.finished.status is ExecutionStatus.COMPLETED_WITH_ERRORS
    assert failed_softly.finished.error_message == "directory unreachable for x"
    assert refused.of_type("result")[0].result == {"error": "Admin privileges required"}
    assert allowed.finished.status is ExecutionStatus.SUCCESS
    assert allowed.of_type("result")[0].result is None
