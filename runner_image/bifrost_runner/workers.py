"""The daemon threads sync workflows run in, kept for the next call once a call is done.

A ready runner's rehearsal leaves one such thread idle, so the execution it then serves does not pay for
starting a thread (a fresh stack and thread state, most of a millisecond in a new fork). Daemon threads: a
workflow that ignores its timeout cannot hold the process's exit; a thread still busy with one is never handed
another call.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

Job = Callable[[], None]

_idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()


class _Worker:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="workflow", daemon=True).start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            finally:
                _idle.put(self)


def run_in_worker(job: Job) -> None:
    """Start `job` on an idle worker thread, or on a new one. `job` reports its own outcome and must not raise."""
    try:
        worker = _idle.get_nowait()
    except queue.Empty:
        worker = _Worker()
    worker.submit(job)


def _forget_idle_workers() -> None:
    """A fork has only the thread that forked: the idle workers it inherited do not exist in it."""
    global _idle  # replaced, not emptied: a thread of the parent may have held its lock at the fork
    _idle = queue.SimpleQueue()


os.register_at_fork(after_in_child=_forget_idle_workers)
