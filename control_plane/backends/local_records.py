"""The local backend's record of each runner: one small JSON file per execution in `{data_dir}/runners/`.

It makes `launch` idempotent across control-plane restarts (the file is created exclusively, once per
execution) and lets a restarted control plane find its runners again: the pid together with the process's
start time identifies a process even when the pid has been reused since.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
from pathlib import Path

from pydantic import BaseModel, ValidationError

from bifrost._internal.prepared_files import PreparedFile

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class RunnerRecord(BaseModel):
    execution_id: str
    pid: int | None = None
    start_time: int | None = None
    """Start time of the process in clock ticks after boot (field 22 of /proc/<pid>/stat)."""
    kill_at: float | None = None
    """Wall-clock time (epoch seconds) after which the runner is killed: its timeout plus a grace period."""
    exit_code: int | None = None
    reason: str | None = None
    """Set once the runner has ended: the human-readable reason."""

    @property
    def ended(self) -> bool:
        return self.reason is not None


def process_start_time(pid: int) -> int | None:
    """The start time of a live (not zombie) process, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after its closing one.
    state, *fields = stat[stat.rindex(")") + 2 :].split()
    if state in ("Z", "X"):
        return None
    return int(fields[18])


def is_same_process(pid: int, start_time: int | None) -> bool:
    return start_time is not None and process_start_time(pid) == start_time


class RunnerRecords:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._prepared: PreparedFile | None = None
        self._prepared_lock = threading.Lock()

    def _path(self, execution_id: str, suffix: str) -> Path:
        if not _SAFE_ID.match(execution_id):
            raise ValueError(f"execution id {execution_id!r} is not usable as a file name")
        return self.folder / f"{execution_id}{suffix}"

    def log_path(self, execution_id: str) -> Path:
        return self._path(execution_id, ".log")

    def prepare(self) -> None:
        """Make the file of the next `create` now, off the path of the launch that will use it (see
        `bifrost._internal.prepared_files`)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._prepared_lock:
            if self._prepared is None:
                self._prepared = PreparedFile.make(self.folder)

    def close(self) -> None:
        with self._prepared_lock:
            prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared.discard()

    def create(self, execution_id: str) -> bool:
        """Record a new runner; False when one was already recorded for this execution."""
        path = self._path(execution_id, ".json")
        data = RunnerRecord(execution_id=execution_id).model_dump_json().encode()
        with self._prepared_lock:
            prepared, self._prepared = self._prepared, None
        if prepared is not None:
            os.pwrite(prepared.fd, data, 0)
            os.ftruncate(prepared.fd, len(data))
            try:
                os.close(prepared.name(path))
                return True
            except FileExistsError:
                self._keep(prepared)
                return False
            except OSError as exc:  # cannot be named here (no /proc, say): make the file the usual way
                log.debug("cannot name a prepared runner record (%s); creating it", exc)
                prepared.discard()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        os.write(fd, data)
        os.close(fd)
        return True

    def _keep(self, prepared: PreparedFile) -> None:
        """Keep an unused prepared file for the next `create`, unless another was prepared meanwhile."""
        with self._prepared_lock:
            if self._prepared is None:
                self._prepared = prepared
                return
        prepared.discard()

    def write(self, record: RunnerRecord) -> None:
        """Rewrite the record in place. A new file and a rename would cost two directory updates, each a
        journal write, on every launch; a record cut short by a crash mid-write reads as lost instead."""
        data = record.model_dump_json().encode()
        path = self._path(record.execution_id, ".json")
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            path.unlink()  # a link a runner put in its place: replaced, never followed
            fd = os.open(path, flags | os.O_EXCL, 0o600)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def read(self, execution_id: str) -> RunnerRecord | None:
        """The record; None when there is none, or only an unreadable one."""
        try:
            return RunnerRecord.model_validate_json(_read_no_link(self._path(execution_id, ".json")))
        except FileNotFoundError:
            return None
        except (ValidationError, OSError):
            log.warning("the runner record of execution %s is unreadable; taking the runner as lost", execution_id)
            return None

    def log_tail(self, execution_id: str, lines: int) -> str | None:
        """The last `lines` lines the runner wrote to its stdout and stderr (whole lines only, of at most the last
        256 bytes per line asked for)."""
        try:
            fd = os.open(self.log_path(execution_id), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a link put in its place: never followed
            log.warning("the runner log of execution %s is not a plain file (%s); not read", execution_id, exc)
            return None
        with os.fdopen(fd, "rb") as runner_log:
            start = max(0, runner_log.seek(0, os.SEEK_END) - 256 * lines)
            # From the byte before, to tell whether the first line is whole: one begun mid-line could hold the end
            # of a secret, which masking would not recognize.
            runner_log.seek(max(0, start - 1))
            data = runner_log.read()
        if start > 0:
            data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:]) or None

    def remove(self, execution_id: str) -> None:
        self._path(execution_id, ".json").unlink(missing_ok=True)


def _read_no_link(path: Path) -> bytes:
    """The file's bytes; OSError when a symbolic link stands in its place. Runners can write in this folder
    (their logs are here), and a link must not make the control plane read or write elsewhere."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        return file.read()
