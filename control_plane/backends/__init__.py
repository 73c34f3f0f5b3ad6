"""Execution backends; `create_backend` picks the one the settings name."""

from __future__ import annotations

from control_plane.backends.base import Backend
from control_plane.settings import Settings


class BackendNotAvailableError(ValueError):
    """The configured backend is not part of this installation."""


def create_backend(settings: Settings) -> Backend:
    # Imported on demand: each backend pulls in its own client libraries.
    if settings.backend == "local":
        from control_plane.backends.local import LocalBackend

        return LocalBackend(settings)
    if settings.backend == "kubernetes":
        from control_plane.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(settings)
    raise BackendNotAvailableError(
        f"BIFROST_BACKEND={settings.backend!r} is not available yet; use 'local' or 'kubernetes'"
    )
