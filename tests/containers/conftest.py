from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from bifrost_devtools import images


@pytest.fixture(scope="session")
def container_engine() -> Iterator[None]:
    """Podman, configured for this machine (tests/containers/containers.conf) for the tests and the control planes
    they start, unless CONTAINERS_CONF names a configuration already."""
    if "CONTAINERS_CONF" in os.environ:
        yield
        return
    os.environ["CONTAINERS_CONF"] = str(images.CONTAINERS_CONF)
    try:
        yield
    finally:
        del os.environ["CONTAINERS_CONF"]


@pytest.fixture(scope="session")
def base_image(container_engine: None) -> str:
    return images.base_image()


@pytest.fixture(scope="session")
def runner_image(base_image: str) -> str:
    return images.build(images.RUNNER_DOCKERFILE, "bifrost-runner", base_image)


@pytest.fixture(scope="session")
def server_image(base_image: str) -> str:
    return images.build(images.SERVER_DOCKERFILE, "bifrost", base_image)


def extension_dockerfile() -> str:
    """The Dockerfile docs/containers.md gives teams for their own runner image."""
    docs = (images.REPO / "docs" / "containers.md").read_text()
    [block] = re.findall(r"^```dockerfile\n(.*?)^```", docs, re.MULTILINE | re.DOTALL)
    return str(block)


@pytest.fixture(scope="session")
def team_runner_image(runner_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A team's runner image, made exactly as the docs say, FROM the runner image built here."""
    context = tmp_path_factory.mktemp("team-image")
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(extension_dockerfile().replace("FROM bifrost-runner:0.1.0", f"FROM {runner_image}", 1))
    return images.build(dockerfile, "bifrost-team-runner", runner_image, context=context)


@pytest.fixture(scope="session")
def docker_host(container_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker API for the docker CLI: podman's Docker-compatible service, on a socket of its own."""
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    socket = tmp_path_factory.mktemp("docker") / "docker.sock"
    url = f"unix://{socket}"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", url],
        env=images.podman_environment(),
        cwd=socket.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman's Docker-compatible service did not start (exit code {service.poll()})")
            time.sleep(0.05)
        yield url
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
