"""The worker threads sync workflows run in."""

from __future__ import annotations

import os
import threading

from bifrost_runner.workers import run_in_worker


def _thread_of_next_job(release: threading.Event | None = None) -> int:
    started, done = threading.Event(), threading.Event()
    ident: list[int] = []

    def job() -> None:
        ident.append(threading.get_ident())
        started.set()
        if release is not None:
            release.wait(10)
        done.set()

    run_in_worker(job)
    assert started.wait(10)
    if release is None:
        assert done.wait(10)
    return ident[0]


def test_a_finished_worker_takes_the_next_job() -> None:
    first = _thread_of_next_job()
    # The worker puts itself back after the job returns: give it the moment it needs.
    for _ in range(100):
        second = _thread_of_next_job()
        if second == first:
            break
    assert second == first
    assert threading.current_thread().ident != first


def test_a_busy_worker_is_never_given_another_job() -> None:
    release = threading.Event()
    busy = _thread_of_next_job(release)
    try:
        assert _thread_of_next_job() != busy
    finally:
        release.set()


def test_a_fork_starts_its_own_worker() -> None:
    parent_worker = _thread_of_next_job()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child_worker = _thread_of_next_job()
            code = 0 if threading.get_ident() != child_worker else 1
        finally:
            os.write(write_end, b"ran")
            os._exit(code)
    os.close(write_end)
    assert os.read(read_end, 3) == b"ran"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent_worker != threading.get_ident()
