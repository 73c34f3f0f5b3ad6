"""User management: onboarding, offboarding and bulk changes in the organisation's directory."""

import logging
import uuid
from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field

from bifrost import ExecutionContext, UserError, context, workflow

logger = logging.getLogger(__name__)

ALLOWED_DEPARTMENTS = ("IT", "Finance", "Sales", "Operations")


class OffboardingReason(StrEnum):
    """Why a person leaves; it decides how long their mailbox is kept."""

    RESIGNED = "resigned"
    CONTRACT_ENDED = "contract_ended"
    DISMISSED = "dismissed"


class UserChange(BaseModel):
    """One change to apply to an existing user."""

    email: str
    department: str | None = None
    title: str | None = None
    active: bool = True


@workflow(category="User Management", tags=["directory"])
async def create_user(email: str, name: str, department: str = "IT", active: bool = True) -> dict[str, object]:
    """Create a new user in the directory.

    Args:
        email: Sign-in address of the new user.
        name: Display name, as shown in the address book.
        department: One of IT, Finance, Sales, Operations.
        active: Whether the account can sign in right away.
    """
    if "@" not in email:
        raise UserError(f"{email!r} is not an email address")
    if department not in ALLOWED_DEPARTMENTS:
        raise UserError(f"unknown department {department!r}; choose one of {', '.join(ALLOWED_DEPARTMENTS)}")
    user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, email))
    logger.info("creating %s in %s for org %s", email, department, context.org_id)
    return {"user_id": user_id, "email": email, "name": name, "department": department, "active": active}


@workflow(category="User Management", tags=["directory"])
async def assign_manager(email: str, department: str, manager: str, note: str = "") -> dict[str, object]:
    """Give a user a new manager within their department.

    Args:
        email: Sign-in address of the user.
        department: The department the user works in.
        manager: Sign-in address of their new manager.
        note: Why the change is made.
    """
    logger.info("%s now reports to %s in %s", email, manager, department)
    return {"email": email, "department": department, "manager": manager, "note": note}


@workflow(category="User Management", tags=["directory"], timeout_seconds=900, retries={"count": 2})
async def offboard_user(
    context: ExecutionContext,
    user_id: uuid.UUID,
    last_day: date,
    reason: OffboardingReason = OffboardingReason.RESIGNED,
    transfer_files_to: Annotated[str | None, Field(description="Colleague who receives the files.")] = None,
) -> dict[str, object]:
    """Disable a leaver's account and hand over their files.

    Args:
        user_id: Directory id of the person leaving.
        last_day: The account is disabled at the end of this day.
        reason: Decides how long the mailbox is kept.
    """
    keep_mailbox_days = 90 if reason is OffboardingReason.RESIGNED else 30
    logger.info("offboarding %s (requested by %s)", user_id, context.user.email)
    return {
        "user_id": str(user_id),
        "disabled_on": last_day.isoformat(),
        "mailbox_kept_days": keep_mailbox_days,
        "files_transferred_to": transfer_files_to,
    }


@workflow(category="User Management", tags=["directory", "bulk"])
async def bulk_update_users(changes: list[UserChange], dry_run: bool = True) -> dict[str, object]:
    """Apply many user changes at once; with dry_run, only report what would change.

    Args:
        changes: One entry per user to change.
        dry_run: Report the changes without applying them.
    """
    applied = [] if dry_run else [change.email for change in changes]
    for change in changes:
        logger.info("%s %s", "would update" if dry_run else "updating", change.email)
    return {"planned": len(changes), "applied": applied}
