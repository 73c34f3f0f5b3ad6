"""Waiting for an execution: its log live, a progress display, a deadline (`--timeout`), and Ctrl-C, which asks
whether to cancel it; then its outcome, and the exit code of its final status."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError, ExitCode, of_status

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from bifrost.api import ExecutionOut, LogLine
    from bifrost.client import Client


def _start_without_ctrl_c(start: Callable[[], None]) -> None:
    """Start a thread that never takes SIGINT: delivered to another thread than the main one, Ctrl-C would count
    only once the main thread, blocked reading the stream, runs Python again, at the stream's next event."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class LogPrinter:
    """Prints log lines as they come: to stdout, or to stderr when stdout carries JSON."""

    def __init__(self, *, to_stderr: bool) -> None:
        self._console: Console = output.stderr() if to_stderr else output.stdout()
        self.printed = 0

    def print(self, line: LogLine) -> None:
        from rich.text import Text

        stamp = line.ts.astimezone().strftime("%H:%M:%S")
        text = Text(f"{stamp} {line.level:<7} ", style="dim")
        text.append(f"{line.logger}: " if line.logger and line.logger != "root" else "", style="dim")
        text.append(line.message)
        self._console.print(text)
        self.printed += 1


class _Progress:
    """A spinner with the execution's status, its age and its log count, on a terminal; status changes as plain
    lines elsewhere (a CI log)."""

    def __init__(self, title: str) -> None:
        self._title = title
        self._status = ""
        self._lines = 0
        self._live = sys.stderr.isatty() and sys.stdout.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _Progress:
        if self._live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=output.stderr(), transient=True,
            )  # fmt: skip
            _start_without_ctrl_c(self._progress.start)
            self._task = self._progress.add_task(self._title)
        else:
            output.note(f"Waiting for {self._title}")
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def status(self, status: str) -> None:
        if status == self._status:
            return
        self._status = status
        if self._live:
            self._show()
        else:
            output.note(f"status: {status}")

    def line(self) -> None:
        self._lines += 1
        if self._live:
            self._show()

    def _show(self) -> None:
        if self._progress is not None and self._task is not None:
            lines = f" · {self._lines} log lines" if self._lines else ""
            self._progress.update(self._task, description=f"{self._title} · {self._status}{lines}")


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def watch(
    client: Client,
    execution: ExecutionOut,
    *,
    printer: LogPrinter | None,
    timeout: float | None,
) -> ExecutionOut:
    """Follow `execution` until it finishes, printing its log lines with `printer`; the finished execution."""
    from bifrost.client import WaitTimeoutError

    execution_id = execution.execution_id
    last_line = 0 if printer is not None else execution.log_count
    ends = None if timeout is None else time.monotonic() + timeout
    cancelled = False
    with _Progress(f"{execution.workflow_name} ({execution_id})") as progress:
        progress.status(execution.status.value)
        while True:
            remaining = None if ends is None else ends - time.monotonic()
            try:
                for event in client.follow(execution_id, after_line=last_line, timeout=remaining):
                    last_line = event.last_line
                    if event.log is not None:
                        progress.line()
                        if printer is not None:
                            printer.print(event.log)
                    elif event.status is not None:
                        progress.status(event.status.status.value)
                break
            except WaitTimeoutError:
                raise CliError(
                    f"execution {execution_id} had not finished after {timeout:g} s; it goes on running "
                    f"(follow it: bifrost executions logs {execution_id} --follow)",
                    ExitCode.STILL_RUNNING,
                ) from None
            except KeyboardInterrupt:
                progress.stop()
                if cancelled or not interactive() or not _confirm_cancel(execution_id):
                    raise CliError(
                        f"interrupted; execution {execution_id} goes on running "
                        f"(cancel it: bifrost executions cancel {execution_id})",
                        ExitCode.INTERRUPTED,
                    ) from None
                cancel(client, execution_id)
                cancelled = True
    return client.get_execution(execution_id)


def _confirm_cancel(execution_id: str) -> bool:
    try:
        return typer.confirm(f"Cancel execution {execution_id}?", default=False, err=True)
    except typer.Abort:
        return False


def cancel(client: Client, execution_id: str) -> None:
    """Ask the execution to stop; one that has already finished is left as it is."""
    from bifrost.client import ConflictError

    try:
        client.cancel(execution_id)
    except ConflictError as exc:
        output.note(exc.message)
    else:
        output.note(f"Cancelling execution {execution_id}")


def log_lines(client: Client, execution_id: str) -> Iterator[LogLine]:
    """Every log line stored for an execution, page after page."""
    from bifrost.api import MAX_LOG_PAGE

    after = 0
    while True:
        page = client.get_logs(execution_id, after=after, limit=MAX_LOG_PAGE)
        yield from page.logs
        if not page.has_more:
            return
        after = page.next_after


def print_logs(client: Client, execution_id: str, printer: LogPrinter) -> None:
    """Every log line stored for a finished execution."""
    for line in log_lines(client, execution_id):
        printer.print(line)


def report(execution: ExecutionOut, output_format: str) -> ExitCode:
    """The finished execution: its outcome on stdout (JSON, or result and error for people); the exit code of
    its status."""
    if output_format == "json":
        output.print_json(execution)
        return of_status(execution.status.value)
    import json

    err = output.stderr()
    took = f" in {execution.duration_ms / 1000:.2f} s" if execution.duration_ms is not None else ""
    style = "green" if execution.status.value == "Success" else "red"
    err.print(
        f"[bold]{execution.workflow_name}[/bold] [{style}]{execution.status.value}[/{style}]{took} "
        f"· execution {execution.execution_id}"
    )
    if execution.error is not None:
        if execution.error.traceback:
            err.print(execution.error.traceback.rstrip(), markup=False, style="dim")
        if execution.error.runner_log_tail:
            err.print(execution.error.runner_log_tail.rstrip(), markup=False, style="dim")
        if not execution.error.traceback:  # whose last line says it already
            err.print(f"{execution.error.type or 'Error'}: {execution.error.message or ''}", markup=False)
    if execution.result is not None:
        sys.stdout.write(json.dumps(execution.result, indent=2, ensure_ascii=False, default=str) + "\n")
    return of_status(execution.status.value)
