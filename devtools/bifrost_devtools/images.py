"""The images the tests and the benchmarks run, built with podman on this machine, and the podman helpers they share.

No image registry is reachable from here, so the Python base image is made from Debian packages
(`debootstrap --variant=minbase` with python3 and its venv module) and imported; the repository's Dockerfiles are
built on it through their `BASE_IMAGE` argument. Every image is tagged with a digest of what it is made from: an
image whose tag exists is not built again, so only the first session after a change pays for a build.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from control_plane.backends.container_spec import INSTANCE, instance_of
from control_plane.settings import Settings

REPO = Path(__file__).resolve().parents[2]
"""The repository: the dev tools run from its source tree."""
CONTAINERS_CONF = REPO / "tests" / "containers" / "containers.conf"
"""What podman needs on this kind of machine (runc, cgroupfs, ulimits): not Bifrost's defaults, only the machine's."""
RUNNER_DOCKERFILE = REPO / "runner_image" / "Dockerfile"
SERVER_DOCKERFILE = REPO / "Dockerfile"

BASE_RECIPE = {
    "suite": "bookworm",
    "variant": "minbase",
    "mirror": "http://deb.debian.org/debian",
    "packages": ["python3", "python3-venv"],
    "env": ["LANG=C.UTF-8"],
}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""The base image trusts what this machine trusts (its egress may present its own certificate authority), so that
builds on it reach PyPI as the machine does."""
_LOCK = Path(tempfile.gettempdir()) / "bifrost-test-images.lock"
"""Held while an image is looked for and built: worktrees sharing the machine's image store build each image once."""


class PodmanError(RuntimeError):
    pass


def podman_environment() -> dict[str, str]:
    """The environment podman commands run with: this machine's containers.conf unless one is set already."""
    return {"CONTAINERS_CONF": str(CONTAINERS_CONF)} | dict(os.environ)


def podman(*args: str, stdin: int | None = None, timeout: float = 1800) -> str:
    result = subprocess.run(
        ["podman", *args], env=podman_environment(), stdin=stdin, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise PodmanError(f"podman {shlex.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def container_log(name: str) -> str:
    """What a container printed, its stdout and stderr together."""
    result = subprocess.run(
        ["podman", "logs", name], env=podman_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return result.stdout


def image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], env=podman_environment()).returncode == 0


def image_id(tag: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", tag).strip()


@contextlib.contextmanager
def _building() -> Iterator[None]:
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def base_image() -> str:
    """The Python base image, made once per recipe."""
    recipe = json.dumps(BASE_RECIPE, sort_keys=True).encode()
    tag = f"localhost/bifrost-test-base:{BASE_RECIPE['suite']}-{_digest(recipe, HOST_CA_BUNDLE.read_bytes())}"
    with _building():
        if not image_exists(tag):
            _make_base_image(tag)
    return tag


def _make_base_image(tag: str) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bifrost-base-", dir="/var/tmp") as folder:
        rootfs = Path(folder) / "rootfs"
        command = [
            "debootstrap",
            f"--variant={BASE_RECIPE['variant']}",
            f"--include={','.join(BASE_RECIPE['packages'])}",
            str(BASE_RECIPE["suite"]),
            str(rootfs),
            str(BASE_RECIPE["mirror"]),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True)
        finally:
            _unmount_below(rootfs)
        if result.returncode != 0:
            raise PodmanError(f"{shlex.join(command)} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        changes = [f"--change=ENV {variable}" for variable in BASE_RECIPE["env"]] + ['--change=CMD ["python3"]']
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            assert tar.stdout is not None
            podman("import", *changes, "-", tag, stdin=tar.stdout.fileno())
        if tar.returncode != 0:
            raise PodmanError(f"packing {rootfs} failed ({tar.returncode})")
    print(f"built {tag} in {time.monotonic() - started:.0f}s", flush=True)


def _unmount_below(rootfs: Path) -> None:
    """Unmount what debootstrap mounted in the new system (its /proc, /sys) and left behind if it was stopped
    halfway: the folder could not be removed otherwise."""
    prefix = f"{rootfs}/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)


def copied_sources(dockerfile: Path) -> list[str]:
    """What the Dockerfile copies from its build context (COPY lines without --from)."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words[1:-1] if not word.startswith("--")]
    return sources


def _content(context: Path, relative: str) -> Iterator[bytes]:
    path = context / relative
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if "__pycache__" in file.parts:
            continue
        yield str(file.relative_to(context)).encode()
        yield file.read_bytes()


def build(dockerfile: Path, name: str, base: str, context: Path = REPO) -> str:
    """The image of `dockerfile` on `base`, built unless an image of the same inputs exists; its tag."""
    inputs = [dockerfile.read_bytes(), image_id(base).encode()]
    ignore = context / ".dockerignore"
    if ignore.exists():
        inputs.append(ignore.read_bytes())
    for source in copied_sources(dockerfile):
        if not (context / source).exists():
            made_by = " (`make ui` builds it)" if source == "ui/dist" else ""
            raise PodmanError(f"{dockerfile} copies {source}, which is not in {context}{made_by}")
        inputs += list(_content(context, source))
    tag = f"localhost/{name}:test-{_digest(*inputs)}"
    with _building():
        if not image_exists(tag):
            started = time.monotonic()
            podman("build", f"--file={dockerfile}", f"--build-arg=BASE_IMAGE={base}", f"--tag={tag}", str(context))
            print(f"built {tag} in {time.monotonic() - started:.0f}s", flush=True)
    return tag


@contextlib.contextmanager
def removing_containers(settings: Settings) -> Iterator[None]:
    """Whatever is left of the containers of the control plane of `settings` is removed after the block."""
    try:
        yield
    finally:
        selector = f"--filter=label={INSTANCE}={instance_of(settings)}"
        leftovers = podman("ps", "--all", "--quiet", selector).split()
        if leftovers:
            podman("rm", "--force", "--time=0", *leftovers)


def build_all() -> None:
    """The base, runner and server images the tests run, built ahead so that no test waits for a first build."""
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    base = base_image()
    for dockerfile, name in ((RUNNER_DOCKERFILE, "bifrost-runner"), (SERVER_DOCKERFILE, "bifrost")):
        print(f"{name}: {build(dockerfile, name, base)}", flush=True)


if __name__ == "__main__":
    build_all()
