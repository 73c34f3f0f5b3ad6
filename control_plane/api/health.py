"""Probes and metrics, open to anyone who can reach the port."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from bifrost.api.health import Readiness
from control_plane.api.dependencies import ServicesDep
from control_plane.db.session import database_reachable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process serves requests."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep) -> JSONResponse:
    """The database answers and the engine (NATS, dispatch, ingestion) works; 503 naming what does not."""
    checks = {
        "database": await run_in_threadpool(database_reachable, services.db_engine),
        "engine": await services.engine.healthy(),
    }
    ready = all(checks.values())
    return JSONResponse(
        Readiness(status="ready" if ready else "not ready", checks=checks).model_dump(),
        status_code=status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
    )


@router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
