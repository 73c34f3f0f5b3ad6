"""The `kubernetes` backend: one `batch/v1` Job per execution, one shared watch per kind, failure diagnosis.

Launch creates the Job suspended, then the execution's token Secret owned by that Job, then lets the Job run:
a pod never starts without its token, and the Secret is deleted with the Job. Every state change of every
Job and pod reaches the backend through two shared watches (Jobs, pods) of the runner namespace; there is no
request per execution besides launching, a failed runner's log tail and deleting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from bifrost._internal.protocol import ExecutionStatus
from control_plane.backends.base import (
    ClaimChannel,
    ExitCallback,
    LaunchSpec,
    RunEnd,
    RunnerDetails,
    RunnerExit,
    diagnosed_exit,
)
from control_plane.backends.kubernetes_api import KubernetesApi, load_api_client
from control_plane.backends.kubernetes_diagnosis import (
    Diagnosis,
    diagnose,
    diagnose_pending,
    job_deleted,
    job_finished,
    job_vanished,
    pod_started,
    runner_state,
)
from control_plane.backends.kubernetes_pool import RunnerPool, Taken
from control_plane.backends.kubernetes_runs import (
    API_VERSION,
    KIND,
    being_deleted,
    build_workflow_run,
    finished_at,
    owner_reference,
    started_patch,
)
from control_plane.backends.kubernetes_runs import ended_patch as run_ended_patch
from control_plane.backends.kubernetes_spec import (
    RUNNER_CONTAINER,
    WORKSPACE_MOUNT,
    build_job,
    build_secret,
    claimed_metadata,
    ended_patch,
    execution_id_of,
    inspect_commands,
    job_name,
    pool_of,
)
from control_plane.backends.kubernetes_watch import SharedWatch
from control_plane.settings import Settings

logger = logging.getLogger(__name__)

# Jobs of no active execution younger than this are left alone by `reconcile`: another replica may have
# launched them after our list of active executions was taken.
ORPHAN_MIN_AGE_SECONDS = 120.0
STARTED_KEPT = 10_000
"""Start times of runs kept for the durations of their WorkflowRuns, at most."""


@dataclass
class _Run:
    """What the backend knows of one execution it launched or re-attached."""

    execution_id: str
    job_name: str
    since: float
    job: dict[str, Any] | None = None
    pod: dict[str, Any] | None = None
    pod_gone: bool = False
    started_at: str | None = None
    """When its pod started, once written onto its WorkflowRun."""


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: Settings, api: KubernetesApi | None = None) -> None:
        self._settings = settings
        self._api = api or KubernetesApi(settings, load_api_client(settings.k8s_api_workers))
        self._runs: dict[str, _Run] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._labelling: dict[str, asyncio.Task[None]] = {}
        """Claimed pool runs whose Job is being labelled and whose WorkflowRun made, by execution id."""
        self._watches: list[SharedWatch] = []
        self._sweepers: list[asyncio.Task[None]] = []
        self._on_exit: ExitCallback | None = None
        self._workflow_runs = settings.k8s_workflow_runs
        self._ended: dict[str, datetime] = {}
        """When the runs of the ended WorkflowRuns in the namespace finished, by WorkflowRun name."""
        self._started: dict[str, datetime] = {}
        """When the pods of runs this replica followed started, for the durations of their WorkflowRuns."""
        self.pool = RunnerPool(settings, self._api)
        self._pool_runs: dict[str, str] = {}
        """The execution each pool pod's Job that took one runs, by the Job's name, while it runs."""
        self._pool_jobs: dict[str, str] = {}
        """The pool Job each execution a pool pod took ran in, by execution, until its end is written onto it."""

    @property
    def watches(self) -> list[SharedWatch]:
        return list(self._watches)

    async def start(self, on_exit: ExitCallback, claims: ClaimChannel | None = None) -> None:
        """`claims`: with it (and `k8s_pool_size` above 0), sync runs take warm pool pods (see `kubernetes_pool`)."""
        self._on_exit = on_exit
        loop = asyncio.get_running_loop()

        def to_loop(callback: Callable[..., None]) -> Callable[..., None]:
            """`callback`, called from a watch thread, runs on the event loop."""

            def from_thread(*args: Any) -> None:
                loop.call_soon_threadsafe(callback, *args)

            return from_thread

        namespace, timeout = self._settings.k8s_namespace, self._settings.k8s_watch_timeout_seconds
        self._watches = [
            SharedWatch(
                "jobs",
                self._api.batch.list_namespaced_job,
                namespace,
                to_loop(self._jobs_listed),
                to_loop(self._job_event),
                timeout,
            ),
            SharedWatch(
                "pods",
                self._api.core.list_namespaced_pod,
                namespace,
                to_loop(self._pods_listed),
                to_loop(self._pod_event),
                timeout,
            ),
        ]
        if self._workflow_runs and not await self._api.workflow_runs_served():
            logger.warning(
                "the API server does not serve WorkflowRuns (workflowruns.bifrost.io): runs are Jobs alone. Install "
                "the CRD from the Helm chart's crds/ folder (or k8s/), or set BIFROST_K8S_WORKFLOW_RUNS=false"
            )
            self._workflow_runs = False
        if self._workflow_runs:
            self._watches.append(
                SharedWatch(
                    "workflowruns",
                    self._api.list_workflow_runs,
                    namespace,
                    to_loop(self._workflow_runs_listed),
                    to_loop(self._workflow_run_event),
                    timeout,
                )
            )
        for watch in self._watches:
            watch.start()
        self._sweepers = [asyncio.create_task(self._sweep_pending())]
        if self._workflow_runs:
            self._sweepers.append(asyncio.create_task(self._expire_workflow_runs()))
        self.pool.start(claims)

    async def stop(self) -> None:
        await self.pool.stop()
        for sweeper in self._sweepers:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await asyncio.gather(*(asyncio.to_thread(watch.stop) for watch in self._watches))
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await asyncio.to_thread(self._api.close)

    async def launch(self, spec: LaunchSpec) -> None:
        if spec.execution_id in self._runs:
            return
        taken = self.pool.choose(spec)
        if taken is not None and await self._launch_warm(spec, taken):
            return
        name = job_name(spec.execution_id)
        self._runs[spec.execution_id] = _Run(spec.execution_id, name, time.monotonic())
        try:
            owner = await self._create_workflow_run(spec) if self._workflow_runs else None
            try:
                job = await self._api.create_job(build_job(spec, self._settings, owner))
            except ApiException as exc:
                if exc.status != 409:
                    raise
                job = await self._api.read_job(name)
                if not job.get("spec", {}).get("suspend"):
                    run = self._runs[spec.execution_id]
                    run.job = job
                    self._evaluate(run)
                    return
            uid = job.get("metadata", {}).get("uid", "")
            try:
                await self._api.create_secret(build_secret(spec, self._settings, uid))
            except ApiException as exc:
                if exc.status != 409:
                    raise
            await self._api.patch_job(name, {"spec": {"suspend": False}})
        except BaseException:
            self._runs.pop(spec.execution_id, None)
            raise

    async def _create_workflow_run(self, spec: LaunchSpec) -> dict[str, Any]:
        """The execution's WorkflowRun (made now, or by an earlier launch): the reference its Job is owned by."""
        try:
            workflow_run = await self._api.create_workflow_run(build_workflow_run(spec, self._settings))
        except ApiException as exc:
            if exc.status != 409:
                raise
            workflow_run = await self._api.read_workflow_run(job_name(spec.execution_id))
        return owner_reference(workflow_run)

    async def _launch_warm(self, spec: LaunchSpec, taken: Taken) -> bool:
        """Run `spec` on the pool pod `taken`; False when the pod did not take it."""
        self._runs[spec.execution_id] = _Run(spec.execution_id, taken.job_name, time.monotonic(), pod=taken.pod)
        self._pool_runs[taken.job_name] = spec.execution_id
        claim_env = spec.runner_env() | {"BIFROST_WORKSPACE_CACHE_DIR": WORKSPACE_MOUNT}
        claimed = False
        try:
            claimed = await self.pool.claim(taken, spec, claim_env)
        finally:
            if not claimed:
                self._runs.pop(spec.execution_id, None)
                self._pool_runs.pop(taken.job_name, None)
        if not claimed:
            return False
        self._remember_pool_job(spec.execution_id, taken.job_name)
        # Off the run's path: the run does not wait for its Job and pod to be labelled.
        task = asyncio.create_task(self._label_claimed(spec, taken))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._labelling[spec.execution_id] = task
        task.add_done_callback(lambda _: self._labelling.pop(spec.execution_id, None))
        return True

    async def _label_claimed(self, spec: LaunchSpec, taken: Taken) -> None:
        """Name the execution on the pool pod's Job, for `kubectl get jobs -l bifrost.io/execution-id=...` (its
        pod is found by its `job-name` label), and make the Job belong to the execution's WorkflowRun."""
        try:
            patch = claimed_metadata(spec)
            if self._workflow_runs:
                patch["metadata"]["ownerReferences"] = [await self._create_workflow_run(spec)]
            await self._api.patch_job(taken.job_name, patch)
        except Exception:
            logger.exception("could not label the pool Job %s with execution %s", taken.job_name, spec.execution_id)

    async def kill(self, execution_id: str) -> None:
        run = self._runs.pop(execution_id, None)
        name = run.job_name if run is not None else job_name(execution_id)
        await self._api.delete_job(name, "Foreground")
        if run is not None:
            await self._report(
                RunnerExit(
                    execution_id=execution_id,
                    exit_code=None,
                    reason=f"Bifrost deleted the Job {name} (the execution was cancelled or timed out).",
                )
            )

    async def reconcile(self, active_execution_ids: list[str]) -> None:
        listed = await self._api.list_jobs()
        await self.pool.reconcile(listed)
        jobs = {execution_id_of(job): job for job in listed}
        for execution_id in active_execution_ids:
            taken = jobs.get(execution_id)
            if taken is not None and pool_of(taken) is not None:
                self._pool_runs[taken["metadata"]["name"]] = execution_id
                self._remember_pool_job(execution_id, taken["metadata"]["name"])
        pods = {self._execution_of_pod(pod): pod for pod in await self._api.list_pods()}
        now = time.monotonic()
        for execution_id in active_execution_ids:
            job = jobs.get(execution_id)
            if job is None:
                await self._report(diagnosed_exit(execution_id, job_vanished(job_name(execution_id))))
                continue
            run = self._runs.setdefault(execution_id, _Run(execution_id, job["metadata"]["name"], now))
            run.job, run.pod = job, pods.get(execution_id, run.pod)
            self._evaluate(run)
        active = set(active_execution_ids)
        for owner, job in jobs.items():
            if owner is None or owner in active:
                continue
            if job_finished(job) or _age_seconds(job) > ORPHAN_MIN_AGE_SECONDS:
                await self._api.delete_job(job["metadata"]["name"], "Background")

    async def run_ended(self, end: RunEnd) -> None:
        """Write the final status onto the Job as a label and the error message as an annotation, and both with
        the run's times onto its WorkflowRun."""
        labelling = self._labelling.get(end.execution_id)
        if labelling is not None:  # a short pool run can end before its WorkflowRun is made: the end goes after it
            await asyncio.wait([labelling])
        name = self._pool_jobs.pop(end.execution_id, None) or job_name(end.execution_id)
        started = end.started_at or self._started.get(end.execution_id)
        self._started.pop(end.execution_id, None)
        writes: list[tuple[str, Awaitable[Any]]] = [
            ("Job", self._api.patch_job(name, ended_patch(end.status.value, end.error_message)))
        ]
        if self._workflow_runs:
            patch = run_ended_patch(end.status.value, end.error_message, started, end.finished_at)
            writes.append(("WorkflowRun", self._api.patch_workflow_run(job_name(end.execution_id), patch)))
        for kind, write in writes:
            try:
                await write
            except ApiException as exc:
                if exc.status != 404:  # one already removed (TTL, deleted) has nothing to show
                    logger.warning(
                        "could not write the end of execution %s onto %s %s: %s", end.execution_id, kind, name, exc
                    )
            except Exception as exc:
                logger.warning(
                    "could not write the end of execution %s onto %s %s: %s", end.execution_id, kind, name, exc
                )

    def _remember_pool_job(self, execution_id: str, name: str) -> None:
        self._pool_jobs[execution_id] = name
        if len(self._pool_jobs) > STARTED_KEPT:
            # Runs whose end another replica recorded never come back for theirs: forget the oldest.
            del self._pool_jobs[next(iter(self._pool_jobs))]

    def runner_ref(self, execution_id: str) -> str:
        """The Job's name."""
        return self._job_name(execution_id)

    def _job_name(self, execution_id: str) -> str:
        run = self._runs.get(execution_id)
        return run.job_name if run is not None else job_name(execution_id)

    def details(self, execution_id: str) -> RunnerDetails:
        """The Job (and pod, while this replica tracks the run) of an execution, and the kubectl commands to
        inspect them."""
        namespace, name = self._settings.k8s_namespace, self._job_name(execution_id)
        run = self._runs.get(execution_id)
        pod = (run.pod or {}).get("metadata", {}).get("name") if run else None
        return RunnerDetails(
            namespace=namespace, job_name=name, pod_name=pod, commands=inspect_commands(namespace, name)
        )

    def _jobs_listed(self, jobs: list[dict[str, Any]], listed_at: float) -> None:
        seen = {job["metadata"]["name"]: job for job in jobs}
        for run in list(self._runs.values()):
            job = seen.get(run.job_name)
            if job is not None:
                run.job = job
                self._evaluate(run)
            elif run.job is not None and run.since < listed_at:
                self._conclude(run, job_vanished(run.job_name))

    def _pods_listed(self, pods: list[dict[str, Any]], _listed_at: float) -> None:
        for pod in pods:
            self._pod_event("MODIFIED", pod)

    def _job_event(self, kind: str, job: dict[str, Any]) -> None:
        name = job.get("metadata", {}).get("name", "")
        run = self._runs.get(execution_id_of(job) or self._pool_runs.get(name) or "")
        if run is None:
            if pool_of(job) is not None:
                self.pool.job_event(kind, job)
            return
        if kind == "DELETED":
            # A Job may finish and be deleted (TTL 0) before we saw it finish: judge its last state first.
            self._conclude(run, diagnose(job, run.pod, run.pod_gone) or job_deleted(run.job_name))
            return
        run.job = job
        self._evaluate(run)

    def _execution_of_pod(self, pod: dict[str, Any]) -> str | None:
        """The execution a pod runs: from its own annotation, or its pool Job's."""
        job = (pod.get("metadata", {}).get("labels") or {}).get("job-name", "")
        return execution_id_of(pod) or self._pool_runs.get(job)

    def _pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        run = self._runs.get(self._execution_of_pod(pod) or "")
        if run is None:
            if pool_of(pod) is not None:
                self.pool.pod_event(kind, pod)
            return
        run.pod, run.pod_gone = pod, kind == "DELETED"
        if self._workflow_runs and run.started_at is None and pod_started(pod):
            run.started_at = str(pod.get("status", {}).get("startTime") or _now_timestamp())
            self._spawn(self._write_started(run.execution_id, run.started_at))
        self._evaluate(run)

    async def _write_started(self, execution_id: str, started_at: str) -> None:
        name = job_name(execution_id)
        self._started[execution_id] = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
        if len(self._started) > STARTED_KEPT:
            # Runs whose end another replica recorded never come back for theirs: forget the oldest.
            del self._started[next(iter(self._started))]
        try:
            await self._api.patch_workflow_run(name, started_patch(started_at))
        except Exception as exc:
            logger.warning("could not write the start of execution %s onto WorkflowRun %s: %s", execution_id, name, exc)

    def _workflow_runs_listed(self, workflow_runs: list[dict[str, Any]], listed_at: float) -> None:
        present = {execution_id_of(workflow_run) for workflow_run in workflow_runs}
        self._ended.clear()
        for workflow_run in workflow_runs:
            self._workflow_run_event("MODIFIED", workflow_run)
        for run in list(self._runs.values()):
            # A run whose WorkflowRun went while nobody watched: it was deleted, unless it was never made yet.
            if (
                run.job is not None
                and run.since < listed_at
                and run.execution_id not in present
                and _owned_by_workflow_run(run.job)
            ):
                self._cancel_deleted(run)

    def _workflow_run_event(self, kind: str, workflow_run: dict[str, Any]) -> None:
        name = workflow_run.get("metadata", {}).get("name", "")
        finished = finished_at(workflow_run)
        if kind == "DELETED" or finished is None:
            self._ended.pop(name, None)
        else:
            self._ended[name] = finished
        run = self._runs.get(execution_id_of(workflow_run) or "")
        if run is not None and (kind == "DELETED" or being_deleted(workflow_run)):
            self._cancel_deleted(run)

    def _cancel_deleted(self, run: _Run) -> None:
        """Someone deleted the run's WorkflowRun (`kubectl delete workflowrun`): cancel the execution."""
        if self._runs.pop(run.execution_id, None) is None:
            return
        self._pool_runs.pop(run.job_name, None)
        self._spawn(self._finish_cancelled(run))

    async def _finish_cancelled(self, run: _Run) -> None:
        try:
            await self._api.delete_job(run.job_name, "Foreground")
        except Exception:
            logger.exception("could not delete the Job %s of a deleted WorkflowRun", run.job_name)
        await self._report(
            RunnerExit(
                execution_id=run.execution_id,
                exit_code=None,
                status=ExecutionStatus.CANCELLED,
                reason=f"The WorkflowRun {job_name(run.execution_id)} was deleted (kubectl delete workflowrun?): the "
                "run was cancelled and its Job deleted.",
            )
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _evaluate(self, run: _Run) -> None:
        diagnosis = diagnose(run.job, run.pod, run.pod_gone)
        if diagnosis is not None:
            self._conclude(run, diagnosis)

    async def _expire_workflow_runs(self) -> None:
        """Delete the WorkflowRuns whose run finished `k8s_workflow_run_ttl_seconds` ago (their Jobs go with them).
        Every replica does; a WorkflowRun another one deleted first is simply gone."""
        ttl = self._settings.k8s_workflow_run_ttl_seconds
        while True:
            await asyncio.sleep(min(300.0, ttl / 4))
            expired_before = datetime.now(UTC) - timedelta(seconds=ttl)
            for name, finished in list(self._ended.items()):
                if finished > expired_before:
                    continue
                del self._ended[name]
                try:
                    await self._api.delete_workflow_run(name)
                except Exception:
                    logger.exception("could not delete the expired WorkflowRun %s", name)

    async def _sweep_pending(self) -> None:
        """One timer for all executions: fail those whose pod has not started within the pending timeout."""
        limit = self._settings.k8s_pending_timeout_seconds
        while True:
            await asyncio.sleep(min(5.0, limit / 4))
            now = time.monotonic()
            for run in list(self._runs.values()):
                if run.job is not None and not pod_started(run.pod) and now - run.since > limit:
                    self._conclude(run, diagnose_pending(run.job_name, run.pod, now - run.since))

    def _conclude(self, run: _Run, diagnosis: Diagnosis) -> None:
        """Report the end of `run` exactly once: it leaves the tracked runs here, synchronously."""
        if self._runs.pop(run.execution_id, None) is None:
            return
        self._pool_runs.pop(run.job_name, None)
        self._spawn(self._finish(run, diagnosis))

    async def _finish(self, run: _Run, diagnosis: Diagnosis) -> None:
        if self._workflow_runs and diagnosis == job_deleted(run.job_name) and await self._workflow_run_gone(run):
            # The garbage collector deleted the Job of a deleted WorkflowRun before its watch told us.
            await self._finish_cancelled(run)
            return
        if job_finished(run.job) and not run.pod_gone and not runner_state(run.pod).get("terminated"):
            # The pods' watch may lag behind the Jobs' one: read the pod's final state before judging.
            await self._refresh_pod(run)
            diagnosis = diagnose(run.job, run.pod, run.pod_gone) or diagnosis
        log_tail = await self._log_tail(run.pod) if diagnosis.container_ran and run.pod is not None else None
        if diagnosis.job_active:
            try:
                await self._api.delete_job(run.job_name, "Foreground")
            except Exception:
                logger.exception("could not delete the Job %s of a failed execution", run.job_name)
        await self._report(diagnosed_exit(run.execution_id, diagnosis, log_tail))

    async def _workflow_run_gone(self, run: _Run) -> bool:
        try:
            return being_deleted(await self._api.read_workflow_run(job_name(run.execution_id)))
        except ApiException as exc:
            return bool(exc.status == 404)
        except Exception:
            return False

    async def _refresh_pod(self, run: _Run) -> None:
        try:
            pods = await self._api.list_pods(f"job-name={run.job_name}")
        except Exception as exc:
            logger.warning("could not read the pod of Job %s: %s", run.job_name, exc)
            return
        if pods:
            run.pod = max(pods, key=lambda pod: str(pod.get("metadata", {}).get("creationTimestamp", "")))
        else:
            run.pod_gone = True

    async def _log_tail(self, pod: dict[str, Any]) -> str | None:
        """The pod's last log lines; the container's termination message when the log cannot be read."""
        lines = self._settings.k8s_log_tail_lines
        if lines:
            try:
                return await self._api.pod_log_tail(pod["metadata"]["name"], RUNNER_CONTAINER, lines) or None
            except Exception as exc:
                logger.warning("could not read the log of pod %s: %s", pod["metadata"]["name"], exc)
        message = (runner_state(pod).get("terminated") or {}).get("message")
        return str(message) if message else None

    async def _report(self, runner_exit: RunnerExit) -> None:
        if self._on_exit is None:
            raise RuntimeError("KubernetesBackend.start() was not called")
        try:
            await self._on_exit(runner_exit)
        except Exception:
            logger.exception("reporting the end of execution %s failed", runner_exit.execution_id)


def _now_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owned_by_workflow_run(job: dict[str, Any]) -> bool:
    owners = job.get("metadata", {}).get("ownerReferences") or []
    return any(owner.get("kind") == KIND and owner.get("apiVersion") == API_VERSION for owner in owners)


def _age_seconds(job: dict[str, Any]) -> float:
    created = job.get("metadata", {}).get("creationTimestamp")
    if not created:
        return 0.0
    return (datetime.now(UTC) - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
