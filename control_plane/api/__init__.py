"""The HTTP API: one router per area."""

from fastapi import APIRouter

from control_plane.api import (
    api_keys,
    audit,
    config,
    data_providers,
    executions,
    forms,
    health,
    orgs,
    runner,
    schedules,
    secrets,
    sessions,
    users,
    workflow_access,
    workflows,
    workspace,
)


def api_router() -> APIRouter:
    router = APIRouter()
    areas = (
        health,
        sessions,
        workflows,
        workflow_access,
        data_providers,
        forms,
        executions,
        schedules,
        runner,
        orgs,
        users,
        api_keys,
        secrets,
        config,
        audit,
        workspace,
    )
    for area in areas:
        router.include_router(area.router)
    return router
