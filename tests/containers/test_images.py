"""The two images, built from the repository's Dockerfiles: what they hold, who they run as, how they are labelled
and layered; the control-plane image serves the API and the web UI; a team's runner image built as
docs/containers.md says runs its workflows' dependencies."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import httpx
import pytest

from bifrost_devtools import images
from bifrost_devtools.services import free_port
from tests.api.conftest import eventually

OCI_LABELS = ("title", "description", "version", "licenses")


def run(image: str, *args: str, entrypoint: str = "python") -> str:
    return images.podman("run", "--rm", "--network=none", f"--entrypoint={entrypoint}", image, *args)


def inspect(image: str) -> dict[str, object]:
    [found] = json.loads(images.podman("image", "inspect", image))
    return dict(found)


def project_version() -> str:
    return str(tomllib.loads((images.REPO / "pyproject.toml").read_text())["project"]["version"])


def test_the_runner_image_holds_the_runner_and_nothing_of_the_server(runner_image: str) -> None:
    found = run(
        runner_image,
        "-c",
        "import importlib.util as u; "
        "print(*(u.find_spec(m) is not None for m in "
        "('bifrost', 'bifrost_runner', 'nats', 'control_plane', 'fastapi', 'uvicorn', 'sqlmodel', 'kubernetes')))",
    )
    assert found.split() == ["True"] * 3 + ["False"] * 5
    server_files = ("-name", "control_plane*", "-o", "-name", "fastapi*")
    assert run(runner_image, "/opt", "/usr", *server_files, entrypoint="find") == ""


@pytest.mark.parametrize("image_fixture", ["runner_image", "server_image"])
def test_the_images_run_as_a_numeric_non_root_user(image_fixture: str, request: pytest.FixtureRequest) -> None:
    image: str = request.getfixturevalue(image_fixture)
    user = str(inspect(image)["Config"]["User"])  # type: ignore[index]
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user), user
    assert run(image, "-c", "import os; print(os.getuid(), os.getgid())").split() == user.split(":")


@pytest.mark.parametrize("image_fixture", ["runner_image", "server_image"])
def test_the_images_carry_oci_labels(image_fixture: str, request: pytest.FixtureRequest) -> None:
    image: str = request.getfixturevalue(image_fixture)
    labels: dict[str, str] = inspect(image)["Config"]["Labels"]  # type: ignore[index]
    assert all(labels.get(f"org.opencontainers.image.{name}") for name in OCI_LABELS), labels
    assert labels["org.opencontainers.image.version"] == project_version()


@pytest.mark.parametrize(
    ("dockerfile", "name", "changed"),
    [
        (images.RUNNER_DOCKERFILE, "bifrost-runner", "runner_image/bifrost_runner/__init__.py"),
        (images.SERVER_DOCKERFILE, "bifrost", "control_plane/__init__.py"),
    ],
)
def test_a_change_to_the_code_rebuilds_only_the_last_layer(
    dockerfile: Path, name: str, changed: str, base_image: str, tmp_path: Path
) -> None:
    """The dependencies are installed in a layer before the code is copied: the same dependency layers serve an
    image whose code changed."""
    original = images.build(dockerfile, name, base_image)
    context = tmp_path / "context"
    for source in [*images.copied_sources(dockerfile), ".dockerignore", str(dockerfile.relative_to(images.REPO))]:
        copy = context / source
        copy.parent.mkdir(parents=True, exist_ok=True)
        if (images.REPO / source).is_dir():
            shutil.copytree(
                images.REPO / source, copy, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
            )
        else:
            shutil.copy(images.REPO / source, copy)
    with (context / changed).open("a") as file:
        file.write("\n# a change to the code\n")
    edited = images.build(context / dockerfile.relative_to(images.REPO), name, base_image, context=context)

    before: list[str] = inspect(original)["RootFS"]["Layers"]  # type: ignore[index]
    after: list[str] = inspect(edited)["RootFS"]["Layers"]  # type: ignore[index]
    assert len(after) == len(before)
    assert after[:-1] == before[:-1]
    assert after[-1] != before[-1]


def test_the_server_image_serves_the_web_ui_and_runs_a_workflow(server_image: str) -> None:
    port, key = free_port(), "bfk_server-image-test-key-0123456789"
    name = f"bifrost-server-{port}"
    url = f"http://127.0.0.1:{port}"
    images.podman(
        "run", "--detach", "--name", name, "--network=host", "--read-only", "--tmpfs=/tmp",
        "--tmpfs=/srv/workspace", "--env=BIFROST_WORKSPACE_URL=/srv/workspace", "--env=BIFROST_HOST=127.0.0.1",
        f"--env=BIFROST_PORT={port}", f"--env=BIFROST_BOOTSTRAP_API_KEY={key}", "--env=BIFROST_LOCAL_SANDBOX=none",
        server_image,
    )  # fmt: skip
    try:
        eventually(lambda: _ready(name, url), within=120, what="the control-plane image to answer ready")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
            flows = "from bifrost import workflow\n\n@workflow\ndef double(n: int):\n    return {'n': 2 * n}\n"
            assert api.post("/api/workspace/sync", json={"files": {"flows.py": flows}}).status_code == 200
            response = api.post("/api/workflows/double/execute", json={"parameters": {"n": 21}}, params={"sync": True})
            assert response.status_code == 200, response.text
            assert response.json()["result"] == {"n": 42}
            page = api.get("/executions")
            assert page.status_code == 200
            assert '<div id="root"></div>' in page.text
            script = re.search(r'src="(/assets/[^"]+[.]js)"', page.text)
            assert script is not None and api.get(script[1]).status_code == 200
    finally:
        images.podman("rm", "--force", "--time=5", name)


def _ready(name: str, url: str) -> bool:
    state = images.podman("inspect", "--format", "{{.State.Status}}", name).strip()
    if state != "running":
        raise AssertionError(f"the control plane's container is {state}: {images.container_log(name)[-3000:]}")
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_documented_way_to_extend_the_runner_image_adds_a_dependency(
    team_runner_image: str, runner_image: str
) -> None:
    probe = "import tabulate, bifrost_runner, os; print(tabulate.__version__, os.getuid())"
    assert run(team_runner_image, "-c", probe).split() == ["0.9.0", "10001"]
    with pytest.raises(images.PodmanError, match="No module named 'tabulate'"):
        run(runner_image, "-c", probe)
