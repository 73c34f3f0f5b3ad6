"""A test kubelet (with the bits of the job controller it needs) for the emulated API server.

It follows every Job: when one is created (and not suspended) it creates the Job's pod, runs the pod's command
as a local process with the pod's environment (secretKeyRef values read from the API server's Secrets; each
emptyDir volume a fresh folder, named in place of its mount path where a variable names that path), and
writes pod and Job status as Kubernetes does: phases, container states, exit codes, termination messages,
Job conditions, activeDeadlineSeconds. The pod's log is served at the pod's `log` subresource. A `Fault` set
for an execution makes its pod fail the way a real cluster does.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import os
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

import kmock

from bifrost_devtools.k8s_apiserver import JOBS, PODS, SECRETS, ApiServer, now_timestamp

EXECUTION_ID = "bifrost.io/execution-id"
WORKFLOW = "bifrost.io/workflow"


class Fault(enum.Enum):
    IMAGE_PULL = "ImagePullBackOff"
    UNSCHEDULABLE = "Unschedulable"
    CONTAINER_CONFIG = "CreateContainerConfigError"
    OOM_KILLED = "OOMKilled"
    EVICTED = "Evicted"
    NODE_LOST = "NodeLost"


# The faults that strike a running container, once it printed `TestKubelet.strike_after`.
_RUNTIME_FAULTS = (Fault.OOM_KILLED, Fault.EVICTED, Fault.NODE_LOST)


@dataclass
class _Pod:
    name: str
    job: dict[str, Any]
    process: asyncio.subprocess.Process | None = None
    log: bytearray = field(default_factory=bytearray)
    output_closed: bool = False
    volumes: dict[str, str] = field(default_factory=dict)
    """Mount path -> the local folder standing in for the emptyDir mounted there."""


class TestKubelet:
    __test__ = False

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.faults: dict[str, Fault] = {}
        """Per execution id or workflow name."""
        self.strike_after = ""
        """Runtime faults strike once the container printed this (by default: its first line)."""
        self.scripts: dict[str, str] = {}
        """Python source run instead of the pod's command, per execution id."""
        self.pods: dict[str, _Pod] = {}
        self._jobs_seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._output = asyncio.Condition()

    async def start(self) -> None:
        self.server[PODS, kmock.subresource("log")] << self._serve_log
        self._follower = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        tasks = [t for t in (self._follower, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for pod in self.pods.values():
            if pod.process is not None and pod.process.returncode is None:
                pod.process.kill()
                await pod.process.wait()
        for pod in self.pods.values():
            for folder in pod.volumes.values():
                shutil.rmtree(folder, ignore_errors=True)
        await asyncio.gather(*tasks, return_exceptions=True)

    def log_of(self, job_name: str) -> str:
        return "".join(pod.log.decode() for pod in self.pods.values() if pod.job["metadata"]["name"] == job_name)

    async def printed(self, job_name: str, text: str) -> None:
        """Until the pod of `job_name` printed `text`."""
        async with asyncio.timeout(60), self._output:
            await self._output.wait_for(lambda: text in self.log_of(job_name))

    def _serve_log(self, request: kmock.Request) -> bytes:
        pod = self.pods.get(request.name or "")
        if pod is None:
            raise kmock.KubernetesObjectNotFoundError()
        lines = pod.log.decode(errors="replace").splitlines(keepends=True)
        tail = int(request.params.get("tailLines", len(lines)))
        return "".join(lines[-tail:] if tail else []).encode()

    async def _follow(self) -> None:
        async for change in self.server.changes():
            if change.resource != JOBS:
                continue
            job, uid = change.object, change.object["metadata"]["uid"]
            if change.type == "DELETED":
                self._kill_pods_of(uid)
            elif not job["spec"].get("suspend") and uid not in self._jobs_seen:
                self._jobs_seen.add(uid)
                task = asyncio.create_task(self._run_job(job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _kill_pods_of(self, job_uid: str) -> None:
        for pod in self.pods.values():
            if pod.job["metadata"]["uid"] == job_uid and pod.process and pod.process.returncode is None:
                pod.process.send_signal(signal.SIGTERM)

    def _path(self, job: dict[str, Any], plural: str, name: str, status: bool = True) -> str:
        namespace = job["metadata"]["namespace"]
        base = "/apis/batch/v1" if plural == "jobs" else "/api/v1"
        return f"{base}/namespaces/{namespace}/{plural}/{name}" + ("/status" if status else "")

    async def _patch(self, path: str, body: dict[str, Any]) -> None:
        async with self.server.patch(path, json=body) as response:
            await response.read()

    async def _pod_status(self, pod: _Pod, status: dict[str, Any]) -> None:
        await self._patch(self._path(pod.job, "pods", pod.name), {"status": status})

    async def _job_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        await self._patch(self._path(job, "jobs", job["metadata"]["name"]), {"status": status})

    async def _job_failed(self, job: dict[str, Any], reason: str, message: str) -> None:
        condition = {"type": "Failed", "status": "True", "reason": reason, "message": message,
                     "lastTransitionTime": now_timestamp()}
        await self._job_status(job, {"active": 0, "failed": 1, "conditions": [condition]})

    async def _run_job(self, job: dict[str, Any]) -> None:
        annotations = job["metadata"].get("annotations") or {}  # none on a pool pod's Job
        execution_id = annotations.get(EXECUTION_ID, "")
        fault = self.faults.get(execution_id) or self.faults.get(annotations.get(WORKFLOW, ""))
        pod = await self._create_pod(job, unschedulable=fault is Fault.UNSCHEDULABLE)
        await self._job_status(job, {"active": 1, "startTime": now_timestamp()})
        if fault is Fault.UNSCHEDULABLE:
            return
        if fault is Fault.IMAGE_PULL:
            await self._waiting(pod, "ImagePullBackOff", f'Back-off pulling image "{self._image(job)}"')
            return
        if fault is Fault.CONTAINER_CONFIG:
            await self._waiting(pod, "CreateContainerConfigError", "container has runAsNonRoot and image will run "
                                "as root (pod: \"x\", container: runner)")
            return
        env = await self._environment(job, pod)
        if env is None:
            return
        await self._start(pod, job, env, execution_id)
        await self._supervise(pod, job, fault)

    def _image(self, job: dict[str, Any]) -> str:
        return str(job["spec"]["template"]["spec"]["containers"][0]["image"])

    async def _create_pod(self, job: dict[str, Any], unschedulable: bool) -> _Pod:
        template = job["spec"]["template"]
        status: dict[str, Any] = {"phase": "Pending"}
        if unschedulable:
            status["conditions"] = [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available.",
            }]
        name = f"{job['metadata']['name']}-{secrets.token_hex(3)[:5]}"
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": dict(template["metadata"]["labels"], **{"job-name": job["metadata"]["name"]}),
                "annotations": template["metadata"].get("annotations", {}),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                                     "uid": job["metadata"]["uid"], "controller": True}],
            },
            "spec": template["spec"],
            "status": status,
        }
        async with self.server.post(f"/api/v1/namespaces/{job['metadata']['namespace']}/pods", json=body) as resp:
            await resp.read()
        pod = _Pod(name, job)
        self.pods[name] = pod
        return pod

    async def _waiting(self, pod: _Pod, reason: str, message: str) -> None:
        await self._pod_status(pod, {"phase": "Pending", "containerStatuses": [{
            "name": "runner", "ready": False, "restartCount": 0, "image": self._image(pod.job),
            "state": {"waiting": {"reason": reason, "message": message}},
        }]})

    async def _environment(self, job: dict[str, Any], pod: _Pod) -> dict[str, str] | None:
        """The container's environment; None (and the pod waiting) when a referenced Secret is missing."""
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {"PATH": os.environ.get("PATH", "")}
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                env[var["name"]] = var["value"]
                continue
            secret = self.server.object(SECRETS, job["metadata"]["namespace"], ref["name"])
            if secret is None or ref["key"] not in secret.get("data", {}):
                await self._waiting(pod, "CreateContainerConfigError", f'secret "{ref["name"]}" not found')
                return None
            env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        pod.volumes = self._empty_dirs(job, pod)
        return {name: pod.volumes.get(value, value) for name, value in env.items()}

    @staticmethod
    def _empty_dirs(job: dict[str, Any], pod: _Pod) -> dict[str, str]:
        """A fresh local folder for each emptyDir the container mounts, by mount path: the process sees this
        machine's file system, not the pod's."""
        spec = job["spec"]["template"]["spec"]
        empty = {volume["name"] for volume in spec.get("volumes", []) if "emptyDir" in volume}
        return {
            mount["mountPath"]: tempfile.mkdtemp(prefix=f"{pod.name}-{mount['name']}-")
            for mount in spec["containers"][0].get("volumeMounts", [])
            if mount["name"] in empty
        }

    async def _start(self, pod: _Pod, job: dict[str, Any], env: dict[str, str], execution_id: str) -> None:
        container = job["spec"]["template"]["spec"]["containers"][0]
        script = self.scripts.get(execution_id)
        if script is not None:
            command = [sys.executable, "-c", script]
        else:
            command = [sys.executable if container["command"][0] == "python" else container["command"][0],
                       *container["command"][1:]]
        pod.process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        await self._pod_status(pod, {"phase": "Running", "startTime": now_timestamp(), "containerStatuses": [{
            "name": "runner", "ready": True, "restartCount": 0, "image": container["image"],
            "state": {"running": {"startedAt": now_timestamp()}},
        }]})

    async def _collect_output(self, pod: _Pod) -> None:
        assert pod.process is not None and pod.process.stdout is not None
        async for line in pod.process.stdout:
            pod.log.extend(line)
            async with self._output:
                self._output.notify_all()
        async with self._output:
            pod.output_closed = True
            self._output.notify_all()

    async def _supervise(self, pod: _Pod, job: dict[str, Any], fault: Fault | None) -> None:
        assert pod.process is not None
        output = asyncio.create_task(self._collect_output(pod))
        deadline = job["spec"].get("activeDeadlineSeconds")
        if fault in _RUNTIME_FAULTS:
            async with self._output:
                await self._output.wait_for(lambda: pod.output_closed or (
                    bool(pod.log) and self.strike_after in pod.log.decode()
                ))
            if pod.process.returncode is None:
                pod.process.kill()
        try:
            await asyncio.wait_for(asyncio.shield(pod.process.wait()), timeout=deadline)
        except TimeoutError:
            pod.process.send_signal(signal.SIGTERM)
            await pod.process.wait()
            await output
            await self._terminated(pod, 143, "Error", phase="Failed", reason="DeadlineExceeded",
                                   message="Pod was active on the node longer than the specified deadline")
            await self._job_failed(job, "DeadlineExceeded", "Job was active longer than specified deadline")
            return
        await output
        if self.server.object(JOBS, job["metadata"]["namespace"], job["metadata"]["name"]) is None:
            return
        code = pod.process.returncode or 0
        if fault is Fault.NODE_LOST:
            async with self.server.delete(self._path(job, "pods", pod.name, status=False)) as response:
                await response.read()
            await self._job_failed(job, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            return
        if fault is Fault.EVICTED:
            await self._terminated(pod, 137, "Error", phase="Failed", reason="Evicted",
                                   message="The node was low on resource: memory. Threshold quantity: 100Mi.")
        elif fault is Fault.OOM_KILLED:
            await self._terminated(pod, 137, "OOMKilled", phase="Failed")
        else:
            await self._terminated(pod, code, "Completed" if code == 0 else "Error",
                                   phase="Succeeded" if code == 0 else "Failed")
        if code == 0 and fault is None:
            await self._job_status(job, {"active": 0, "succeeded": 1, "completionTime": now_timestamp(), "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now_timestamp()},
                {"type": "Complete", "status": "True", "lastTransitionTime": now_timestamp()},
            ]})
        else:
            await self._job_failed(job, "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    async def _terminated(self, pod: _Pod, code: int, container_reason: str, *, phase: str, reason: str | None = None,
                          message: str | None = None) -> None:
        terminated: dict[str, Any] = {"exitCode": code, "reason": container_reason, "finishedAt": now_timestamp()}
        if code != 0:
            # terminationMessagePolicy FallbackToLogsOnError: the end of the log becomes the message.
            terminated["message"] = "".join(pod.log.decode(errors="replace").splitlines(keepends=True)[-80:])
        status: dict[str, Any] = {"phase": phase, "containerStatuses": [{
            "name": "runner", "ready": False, "restartCount": 0, "image": self._image(pod.job),
            "state": {"terminated": terminated},
        }]}
        if reason is not None:
            status.update(reason=reason, message=message)
        await self._pod_status(pod, status)
