"""The HTTP API: one router per area."""

from fastapi import APIRouter

from control_plane.api import executions, health, runner, workflows


def api_router() -> APIRouter:
    router = APIRouter()
    for area in (health, workflows, executions, runner):
        router.include_router(area.router)
    return router
