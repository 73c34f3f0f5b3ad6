"""What discovery keeps of one workspace file, computed in the control plane or in a worker process.

A scan with many files to parse spreads them over worker processes. A worker is a fresh interpreter started
with `python -c` that imports only this module and the SDK: multiprocessing's spawn would import the parent's
main module in each worker too, which for the control plane is seconds of imports per worker. A worker reads
one pickled list of (path, source) from its stdin, writes a pickled list of (cache entry, `workflows` rows)
for each few files it parsed to its stdout (a temporary file, which the control plane reads meanwhile), and
exits. Both come out as the values the database stores (the rows as tuples of column values, their JSON
columns as JSON text): the control plane inserts them as they are.

The control plane parses files of a worker's list too, taking them from its end while the worker takes them
from its start, so that both finish together however long each one's other work (the worker's imports, the
control plane's recording of the revision) took on a loaded machine. They meet through two counters in a
shared memory page, each written by one side only: where the worker's files end and where the control plane's
begin. Each side claims a few files at a time and claims only below (above) the other's counter as it read it;
both may parse the few files claimed at the same moment, but no file is left out.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import mmap
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from typing import Any, BinaryIO

from pydantic_core import to_json

from bifrost._internal.discovery import DiscoveryError, FileDiscovery, discover_source
from bifrost.forms import form_field_values
from bifrost.metadata import DataProviderInfo, WorkflowInfo

logger = logging.getLogger(__name__)

WORKFLOW_COLUMNS = (
    "name",
    "kind",
    "description",
    "category",
    "file",
    "function_name",
    "execution_mode",
    "endpoint_enabled",
    "schedule",
    "timeout_seconds",
    "meta",
    "parameters_schema",
)
"""The columns of a `Row`, in its order; a row is stored with its `updated_at` after them."""
Row = tuple[Any, ...]
"""One `workflows` row's values as the database stores them: `meta` and `parameters_schema` as JSON text."""
Rows = dict[str, Row]
"""The `workflows` rows of one file's functions, by name."""

_CACHED = {"workflows": {"__all__": {"form_fields"}}, "data_providers": {"__all__": {"form_fields"}}}
_BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from control_plane.discovery_worker import serve; "
    "serve(int(sys.argv[2]))"
)
CHUNK = 16
"""Files claimed at a time, by a worker and by the control plane; the control plane never takes a worker's
first chunk."""
_COUNTER = struct.Struct("=i")  # native and aligned: each counter is read and written in one instruction
_WORKER_END = 0  # offset of the counter the worker writes: it parses the files before it
_PARENT_START = _COUNTER.size  # offset of the counter the control plane writes: it parses the files from it on
_FRAME = struct.Struct("<Q")
"""The length of each chunk's pickled answer, before it."""


def discover(path: str, source: str) -> FileDiscovery:
    try:
        return discover_source(path, source)
    except Exception as exc:  # one file that trips discovery must not hide the rest of the workspace
        logger.exception("discovery of %s failed", path)
        return FileDiscovery(
            file=path, errors=[DiscoveryError(file=path, line=None, message=f"discovery failed: {exc!r}")]
        )


def discover_stored(path: str, source: str) -> tuple[FileDiscovery, str, Rows]:
    """What one file holds, its cache entry (JSON), and the `workflows` rows of its functions."""
    found = discover(path, source)
    rows = {info.name: workflow_row(info) for info in found.workflows}
    rows.update((info.name, data_provider_row(info)) for info in found.data_providers)
    return found, found.model_dump_json(exclude=_CACHED), rows


def workflow_row(info: WorkflowInfo) -> Row:
    # as `model_dump` would give them, with the models left for the JSON encoder: a third of the time
    meta = {
        "line": info.line,
        "is_async": info.is_async,
        "warnings": info.warnings,
        "tags": info.tags,
        "retries": info.retries,
        "max_concurrency": info.max_concurrency,
        "resources": info.resources,
        "form_fields": form_field_values(info.parameters_schema),
    }
    return (
        info.name,
        "workflow",
        info.description,
        info.category,
        info.file,
        info.function_name,
        info.execution_mode,
        info.endpoint_enabled,
        info.schedule,
        info.timeout_seconds,
        _json(meta),
        _json(info.parameters_schema),
    )


def data_provider_row(info: DataProviderInfo) -> Row:
    meta = {
        "line": info.line,
        "is_async": info.is_async,
        "warnings": info.warnings,
        "cache_ttl_seconds": info.cache_ttl_seconds,
    }
    return (
        info.name,
        "data_provider",
        info.description,
        info.category,
        info.file,
        info.function_name,
        "sync",
        False,
        None,
        info.timeout_seconds,
        _json(meta),
        _json(info.parameters_schema),
    )


def _json(value: Any) -> str:
    return to_json(value).decode()  # pydantic-core's encoder: half the time of `json.dumps`


class WorkerError(RuntimeError):
    """A worker process ended without answering."""


class Worker:
    """One worker process, started at once so that its imports overlap the parent's listing and reading of the
    sources.

    Its answer goes to a temporary file, not a pipe: the thread talking to it only waits for its exit, and the
    parent's parsing takes what was answered between its own chunks (`collect`) in one read, where draining a
    pipe from a thread takes a read per 64 KiB, and each read waits for the interpreter's lock while the
    parent's own parsing holds it."""

    def __init__(self) -> None:
        # all live as long as the worker: `stop` closes them
        self._answer = tempfile.TemporaryFile()  # noqa: SIM115
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115
        self._counters_file = tempfile.TemporaryFile()  # noqa: SIM115
        self._counters_file.truncate(mmap.PAGESIZE)
        self._counters = mmap.mmap(self._counters_file.fileno(), mmap.PAGESIZE)
        self._sources: list[tuple[str, str]] = []
        self._collected = 0  # how much of the answer `collect` took
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, json.dumps(sys.path), str(self._counters_file.fileno())],
            stdin=subprocess.PIPE,
            stdout=self._answer,
            stderr=self._errors,
            pass_fds=(self._counters_file.fileno(),),
        )

    def take_from_end(self) -> range | None:
        """Claim the last few files of the list given to `discover` that nobody claimed yet, for the control
        plane to parse; None when none are left."""
        start = _COUNTER.unpack_from(self._counters, _PARENT_START)[0]
        floor = max(_COUNTER.unpack_from(self._counters, _WORKER_END)[0], CHUNK)
        if start <= floor:
            return None
        new_start = max(start - CHUNK, floor)
        _COUNTER.pack_into(self._counters, _PARENT_START, new_start)
        return range(new_start, start)

    def give(self, sources: list[tuple[str, str]]) -> None:
        """The files for this worker (and `take_from_end`); `discover` sends them."""
        self._sources = sources
        _COUNTER.pack_into(self._counters, _PARENT_START, len(sources))

    def discover(self) -> None:
        """Send the files given and wait for the worker to answer (see `collect`) for the first of them, in
        order, up to where the files the control plane took (`take_from_end`) begin, or a few beyond; the
        worker exits after answering."""
        stdin = self._process.stdin
        assert stdin is not None
        # One write, which blocks until the worker has read it all (its exit code tells when it died instead)
        with contextlib.suppress(BrokenPipeError), stdin:
            stdin.write(pickle.dumps(self._sources, protocol=pickle.HIGHEST_PROTOCOL))
        returncode = self._process.wait()
        message = _read_from_start(self._errors).decode("utf-8", errors="replace").strip()
        if returncode != 0:
            raise WorkerError(f"a discovery worker ended with exit code {returncode}: {message}")
        if message:
            logger.warning("a discovery worker reported: %s", message)

    def collect(self) -> list[tuple[str, Rows]]:
        """The cache entry and rows of each file the worker answered for since the last call, in order: the
        control plane takes them while the worker still parses, to decode them meanwhile."""
        descriptor = self._answer.fileno()
        # positioned reads: the worker writes through the same open file, whose offset a plain read would move
        data = os.pread(descriptor, os.fstat(descriptor).st_size - self._collected, self._collected)
        entries: list[tuple[str, Rows]] = []
        offset = 0
        while offset + _FRAME.size <= len(data):
            (length,) = _FRAME.unpack_from(data, offset)
            end = offset + _FRAME.size + length
            if end > len(data):
                break  # the rest of this chunk is not written yet
            entries.extend(pickle.loads(memoryview(data)[offset + _FRAME.size : end]))
            offset = end
        self._collected += offset
        return entries

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._answer.close()
        self._errors.close()
        self._counters.close()
        self._counters_file.close()


def _read_from_start(file: BinaryIO) -> bytes:
    file.seek(0)
    return file.read()


def serve(counters_descriptor: int) -> None:
    """A worker's life: one batch of sources in, what those the control plane did not take hold out, then
    exit."""
    gc.disable()  # everything built here lives until the exit; see `registry._collection_paused`
    counters = mmap.mmap(counters_descriptor, mmap.PAGESIZE)
    sources: list[tuple[str, str]] = pickle.load(sys.stdin.buffer)
    end = 0
    while end < (parent_start := _COUNTER.unpack_from(counters, _PARENT_START)[0]):
        claimed = min(end + CHUNK, parent_start)
        _COUNTER.pack_into(counters, _WORKER_END, claimed)
        chunk = pickle.dumps(
            [discover_stored(path, source)[1:] for path, source in sources[end:claimed]],
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        sys.stdout.buffer.write(_FRAME.pack(len(chunk)) + chunk)
        sys.stdout.buffer.flush()
        end = claimed
    sys.stderr.flush()
    os._exit(0)  # no teardown of the many objects built: the process ends here
