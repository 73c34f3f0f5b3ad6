"""Maintenance jobs: long runs over many items, and a guarded decommission that refuses unknown hosts."""

import asyncio
import logging
from typing import Annotated

from pydantic import Field

from bifrost import UserError, workflow

logger = logging.getLogger(__name__)

INVENTORY = {"app-01", "app-02", "db-01"}


@workflow(category="Maintenance", timeout_seconds=3600)
async def reconcile_mailboxes(
    mailboxes: Annotated[int, Field(ge=1, le=5000, description="How many mailboxes to check.")] = 200,
    pause_seconds: float = 0.0,
) -> dict[str, int]:
    """Check every mailbox's quota and forwarding rules, logging progress as it goes.

    Args:
        pause_seconds: Wait between mailboxes, to spare the mail server's API limits.
    """
    flagged = 0
    for number in range(1, mailboxes + 1):
        if number % 37 == 0:
            flagged += 1
            logger.warning("mailbox %d forwards to an external address", number)
        if number % 50 == 0 or number == mailboxes:
            logger.info("checked %d/%d mailboxes", number, mailboxes)
        await asyncio.sleep(pause_seconds)
    return {"checked": mailboxes, "flagged": flagged}


@workflow(category="Maintenance")
async def decommission_server(hostname: str) -> dict[str, str]:
    """Remove a server from monitoring and backups; fails with a clear message for hosts not in inventory.

    Args:
        hostname: Short host name, as listed in the inventory.
    """
    if hostname not in INVENTORY:
        raise UserError(f"{hostname!r} is not in the inventory; nothing was changed")
    logger.info("removing %s from monitoring and backups", hostname)
    return {"hostname": hostname, "status": "decommissioned"}
