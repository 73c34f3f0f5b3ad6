"""Execution backends; `create_backend` picks the one the settings name."""

from __future__ import annotations

from control_plane.backends.base import Backend
from control_plane.settings import Settings


class BackendNotAvailableError(ValueError):
    """The configured backend cannot run on this machine."""


def create_backend(settings: Settings) -> Backend:
    # Imported on demand: each backend pulls in its own client libraries.
    if settings.backend == "local":
        from control_plane.backends.local import LocalBackend

        return LocalBackend(settings)
    if settings.backend == "kubernetes":
        from control_plane.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(settings)
    from control_plane.backends.container import ContainerBackend

    return ContainerBackend(settings)
