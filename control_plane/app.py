"""The control plane's FastAPI application and everything it starts and stops with it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime

from fastapi import FastAPI

from control_plane.api import api_router
from control_plane.api.dependencies import Services
from control_plane.api.errors import install_error_handlers
from control_plane.api.guard import RequestGuard
from control_plane.api.ui import WebUi
from control_plane.backends import create_backend
from control_plane.data_providers.service import DataProviderService
from control_plane.db.migrate import upgrade_database
from control_plane.db.models import utcnow
from control_plane.db.session import make_engine
from control_plane.engine import ExecutionEngine
from control_plane.executions.service import ExecutionService
from control_plane.forms.service import FormService
from control_plane.registry import Registry
from control_plane.schedules.scheduler import Scheduler
from control_plane.schedules.service import ScheduleService
from control_plane.security.bootstrap import bootstrap
from control_plane.security.encryption import SecretCipher, load_encryption_keys
from control_plane.security.key_files import make_private_file, make_private_folder
from control_plane.security.tokens import TokenIssuer, load_secret_key
from control_plane.settings import DATABASE_FILE, Settings
from control_plane.workspace_store import store_from_settings


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    """The app of `settings`. `clock` is the time its schedules go by (the real time, unless a test moves it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as started:
            make_private_folder(settings.data_dir)
            if settings.database_url is None:  # SQLite makes its -wal and -shm files with the database's mode
                make_private_file(settings.data_dir / DATABASE_FILE)
            db_engine = make_engine(settings.resolved_database_url)
            started.callback(db_engine.dispose)
            await asyncio.to_thread(upgrade_database, db_engine)
            admin_key = await asyncio.to_thread(bootstrap, db_engine, settings)
            if admin_key is not None:
                _announce_admin_key(admin_key)
            tokens = TokenIssuer(load_secret_key(settings))
            cipher = SecretCipher(load_encryption_keys(settings))
            registry = Registry(store_from_settings(settings), db_engine, poll_seconds=settings.workspace_poll_seconds)
            await registry.start()
            started.push_async_callback(registry.stop)
            engine = ExecutionEngine(settings, db_engine, create_backend(settings), tokens, cipher)
            await engine.start()
            started.push_async_callback(engine.stop)
            executions = ExecutionService(db_engine, registry, engine, cipher, settings)
            data_providers = DataProviderService(db_engine, registry, executions, settings)
            scheduler = Scheduler(db_engine, registry, functools.partial(engine.submit, sync=False), clock=clock)
            await scheduler.start()
            started.push_async_callback(scheduler.stop)
            app.state.services = Services(
                settings=settings,
                db_engine=db_engine,
                registry=registry,
                engine=engine,
                executions=executions,
                data_providers=data_providers,
                forms=FormService(
                    db_engine, registry, executions, data_providers, sync_wait_seconds=settings.sync_wait_seconds
                ),
                schedules=ScheduleService(db_engine, registry, clock=clock),
                tokens=tokens,
                cipher=cipher,
            )
            yield

    app = FastAPI(
        title="Bifrost",
        summary="Run plain Python workflows: discovered, typed, isolated, streamed live.",
        lifespan=lifespan,
    )
    app.include_router(api_router())
    app.router.default = WebUi(settings.ui_dir, not_found=app.router.default)
    install_error_handlers(app)
    app.add_middleware(RequestGuard, settings=settings)
    return app


def _announce_admin_key(key: str) -> None:
    # Printed, not logged: it is shown this once and only its hash is kept, so it must reach the operator's
    # terminal whatever the logging configuration.
    print(
        "\nBifrost admin API key (shown only this once, store it now):\n\n"
        f"    {key}\n\n"
        "Send it as `Authorization: Bearer <key>` or `X-Bifrost-Key: <key>`.\n",
        flush=True,
    )
