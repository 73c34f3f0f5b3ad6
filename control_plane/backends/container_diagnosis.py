"""Why a runner's container ended, or never started: a reason a human understands and the fix to try. Pure
functions over what the container CLI says (`inspect` output, the error of a `run` that failed)."""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass
from typing import Any

from bifrost._internal.protocol import ExecutionStatus, reported_status
from control_plane.backends.container_spec import TIMEOUT_SECONDS

_IMAGE_MISSING_MARKERS = (
    "image not known",
    "no such image",
    "unable to find image",
    "manifest unknown",
    "repository does not exist",
    "pull access denied",
    "initializing source",
    "short-name",
    "failed to resolve reference",
)
_MEMORY_HELP = (
    'Fix: raise the workflow\'s memory limit (@workflow(resources={"memory_limit_mb": ...})) or '
    "BIFROST_CONTAINER_MEMORY_LIMIT_MB."
)


class StopCause(enum.Enum):
    """Why the backend itself stopped a container."""

    CANCELLED = "cancelled"
    DEADLINE = "deadline"


@dataclass(frozen=True)
class Diagnosis:
    reason: str
    status: ExecutionStatus | None
    """`Failed` or `Timeout`; None when the runner exited on its own and its events decide."""
    exit_code: int | None = None
    ran: bool = False
    """The runner ran and failed, so its log is worth reading."""


def _signal_name(exit_code: int) -> str:
    if exit_code > 128:
        try:
            return f", killed by {signal.Signals(exit_code - 128).name}"
        except ValueError:
            return ""
    return ""


def _memory_limit_mb(container: dict[str, Any]) -> int | None:
    memory = (container.get("HostConfig") or {}).get("Memory")
    return int(memory) // (1024 * 1024) if memory else None


def diagnose_end(cli: str, container: dict[str, Any], name: str, stopped: StopCause | None) -> Diagnosis:
    """The end of the container `name` (as `<cli> inspect` describes it), `stopped` by the backend or not."""
    state = container.get("State") or {}
    code = int(state.get("ExitCode") or 0)
    if state.get("Status") == "created":
        return Diagnosis(
            f"The runner container {name} was created but never started ({state.get('Error') or 'no error given'}). "
            "Fix: check that the runner image's entrypoint and user work: "
            f"`{cli} start --attach {name}` shows what fails.",
            ExecutionStatus.FAILED,
        )
    if stopped is StopCause.DEADLINE:
        timeout = (container.get("Config") or {}).get("Labels", {}).get(TIMEOUT_SECONDS, "?")
        return Diagnosis(
            f"The runner container {name} ran past its workflow's timeout of {timeout}s plus "
            "BIFROST_CONTAINER_DEADLINE_GRACE_SECONDS and Bifrost stopped it. Fix: make the workflow faster or "
            "raise its timeout; a workflow that blocks its event loop (time.sleep in an async function) cannot be "
            "timed out by the runner itself.",
            ExecutionStatus.TIMEOUT,
            exit_code=code,
            ran=True,
        )
    reported = reported_status(code)
    if reported is not None:
        # Not a crash: the runner reported the workflow's end, and its exit code says how it ended.
        return Diagnosis(
            f"The runner exited with code {code}: it reported the execution {reported}, but the report did not "
            "reach the control plane.",
            None,
            exit_code=code,
        )
    if stopped is StopCause.CANCELLED:
        return Diagnosis(
            f"Bifrost stopped the runner container {name} (the execution was cancelled).", None, exit_code=code
        )
    memory = _memory_limit_mb(container)
    limit = f"{memory} MiB" if memory else "its limit"
    if state.get("OOMKilled"):
        return Diagnosis(
            f"The runner ran out of memory: it went over its memory limit of {limit} and the kernel killed it "
            f"(exit code {code}). {_MEMORY_HELP}",
            ExecutionStatus.FAILED,
            exit_code=code,
            ran=True,
        )
    if code == 128 + signal.SIGKILL:
        return Diagnosis(
            f"The runner was killed with SIGKILL (exit code {code}) before it could report a result: most likely "
            f"by the kernel, for going over its memory limit of {limit} (the container engine does not always say "
            f"so). {_MEMORY_HELP}",
            ExecutionStatus.FAILED,
            exit_code=code,
            ran=True,
        )
    if code == 0:
        return Diagnosis("The runner exited (code 0) without reporting that the workflow finished.", None, 0)
    return Diagnosis(
        f"The runner exited with code {code}{_signal_name(code)} before it could report a result. Fix: the log "
        "below shows what the runner printed last; a broken runner image or an unreachable control plane "
        "(BIFROST_PUBLIC_URL) or NATS are the usual causes.",
        ExecutionStatus.FAILED,
        exit_code=code,
        ran=True,
    )


def diagnose_launch_failure(
    cli: str, name: str, image: str, pull_policy: str, returncode: int, message: str
) -> Diagnosis | None:
    """Why `<cli> run` failed for the container `name`; None when the engine or the CLI failed rather than this
    container (worth trying again)."""
    lowered = message.lower()
    if any(marker in lowered for marker in _IMAGE_MISSING_MARKERS):
        never = " (BIFROST_RUNNER_IMAGE_PULL_POLICY=Never: it is never pulled)" if pull_policy == "Never" else ""
        return Diagnosis(
            f"The runner image {image!r} is not available to {cli}{never}: {message}. Fix: build it (see "
            f"docs/containers.md) or pull it with `{cli} pull`, or set BIFROST_RUNNER_IMAGE to an image this "
            "machine has or can pull.",
            ExecutionStatus.FAILED,
        )
    # 126 and 127: the runtime could not run the container's command; the OCI runtime's own errors say so too.
    if returncode in (126, 127) or "oci runtime" in lowered or "runc" in lowered or "crun" in lowered:
        return Diagnosis(
            f"The runner container {name} could not start: {message}. Fix: check the runner image "
            f"(BIFROST_RUNNER_IMAGE={image}): it must hold Python with the bifrost_runner package, and run as a "
            "numeric non-root user with a read-only root filesystem.",
            ExecutionStatus.FAILED,
        )
    return None


def container_vanished(name: str) -> Diagnosis:
    return Diagnosis(
        f"The runner container {name} no longer exists: it was removed while the control plane was not watching, "
        "before the runner reported. Fix: run the execution again.",
        ExecutionStatus.FAILED,
    )


def container_removed(name: str) -> Diagnosis:
    return Diagnosis(
        f"The runner container {name} was removed from outside Bifrost before the runner reported. Fix: cancel "
        "executions through Bifrost; run this one again.",
        ExecutionStatus.FAILED,
    )
