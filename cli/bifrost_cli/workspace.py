"""`bifrost workspace`: a local folder as one revision of the server's workspace."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bifrost_cli import output
from bifrost_cli.exits import CliError
from bifrost_cli.options import OrgOption, Output, OutputOption, ProfileOption, connect

if TYPE_CHECKING:
    from bifrost.api import WorkspaceListing

app = typer.Typer(
    name="workspace",
    help="The server's workspace and a local folder: what differs, push the folder as one revision, pull it.",
)

FolderArgument = Annotated[
    Path, typer.Argument(help="The local folder, the workspace's root.", show_default=False, file_okay=False)
]


@dataclass
class LocalFolder:
    root: Path
    files: dict[str, bytes] = field(default_factory=dict)
    """Workspace path -> content, for every file of the folder that is a workspace file."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Path -> why it is not part of the workspace."""

    @property
    def etags(self) -> dict[str, str]:
        from bifrost._internal.workspace import content_etag

        return {path: content_etag(data) for path, data in self.files.items()}


def read_folder(root: Path) -> LocalFolder:
    """The workspace files of `root`, as the server's folder store would list them: hidden folders and
    `__pycache__` unread, other files not acceptable as workspace paths skipped with the reason."""
    from bifrost._internal.workspace import WorkspacePathError, confined_path, normalize_workspace_path

    if not root.is_dir():
        raise CliError(f"{root} is not a folder")
    folder = LocalFolder(root)
    for current, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__pycache__")
        relative_folder = Path(current).relative_to(root).as_posix()
        for name in sorted(names):
            relative = name if relative_folder == "." else f"{relative_folder}/{name}"
            try:
                if normalize_workspace_path(relative) != relative:
                    raise WorkspacePathError(relative, "it is not in its canonical form")
                folder.files[relative] = confined_path(root, relative).read_bytes()
            except WorkspacePathError as exc:
                folder.skipped[relative] = exc.reason
            except OSError as exc:
                raise CliError(f"cannot read {root / relative}: {exc.strerror}") from exc
    return folder


@dataclass(frozen=True)
class Changes:
    added: list[str]
    modified: list[str]
    deleted: list[str]
    unchanged: int

    @property
    def none(self) -> bool:
        return not (self.added or self.modified or self.deleted)


def changes(local: dict[str, str], server: dict[str, str]) -> Changes:
    """What pushing `local` ({path: etag}) changes on a server holding `server`."""
    return Changes(
        added=sorted(local.keys() - server.keys()),
        modified=sorted(path for path in local.keys() & server.keys() if local[path] != server[path]),
        deleted=sorted(server.keys() - local.keys()),
        unchanged=sum(1 for path in local.keys() & server.keys() if local[path] == server[path]),
    )


def _server_files(listing: WorkspaceListing) -> dict[str, str]:
    return {f.path: f.etag for f in listing.files}


def _revision(etags: dict[str, str]) -> str:
    from bifrost._internal.workspace import Manifest

    return Manifest(files=etags).revision


def _print_changes(found: Changes, *, deleted_means: str) -> None:
    rows = [
        *(("added", path) for path in found.added),
        *(("modified", path) for path in found.modified),
        *(("deleted", f"{path}  ({deleted_means})") for path in found.deleted),
    ]
    output.table(("CHANGE", "PATH"), rows, empty=f"no changes ({_files(found.unchanged)} the same)")


@app.command()
def status(
    folder: FolderArgument,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """What differs between the folder and the server's workspace.

    What `push` would add, modify and delete.
    """
    local = read_folder(folder)
    etags = local.etags
    with connect(profile, org) as client:
        listing = client.list_files()
    found = changes(etags, _server_files(listing))
    if output_format == "json":
        output.print_json(_report(local, etags, listing, found))
        return
    output.note(f"Folder {folder}: revision {_revision(etags)[:12]} ({_files(len(etags))})")
    output.note(f"Server: revision {listing.revision[:12]} ({_files(len(listing.files))})")
    _print_changes(found, deleted_means="only on the server")
    _print_skipped(local)


def _report(local: LocalFolder, etags: dict[str, str], listing: WorkspaceListing, found: Changes) -> dict[str, Any]:
    return {
        "folder_revision": _revision(etags),
        "server_revision": listing.revision,
        "registry_revision": listing.registry_revision,
        "added": found.added,
        "modified": found.modified,
        "deleted": found.deleted,
        "unchanged": found.unchanged,
        "skipped": [{"path": path, "reason": reason} for path, reason in local.skipped.items()],
    }


def _print_skipped(local: LocalFolder) -> None:
    for path, reason in local.skipped.items():
        output.note(f"[dim]not a workspace file: {path} ({reason})[/dim]")


@app.command()
def push(
    folder: FolderArgument,
    keep_others: Annotated[
        bool,
        typer.Option("--keep-others", help="Keep the server's files the folder lacks (default: delete them)."),
    ] = False,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Upload the folder as one revision of the workspace.

    The server's workspace becomes exactly the folder (platform admins). Then the problems the server found
    in the folder's files, if any.
    """
    local = read_folder(folder)
    texts = _texts(local)
    with connect(profile, org) as client:
        before = client.list_files()
        found = changes(local.etags, _server_files(before))
        if keep_others:
            found = Changes(found.added, found.modified, [], found.unchanged)
        listing = before if found.none else client.sync_workspace(texts, replace_all=not keep_others)
        problems = [p for p in client.workspace_errors() if p.file in local.files]
    if output_format == "json":
        report = _report(local, local.etags, listing, found)
        report["problems"] = [p.model_dump() for p in problems]
        output.print_json(report)
        return
    _print_changes(found, deleted_means="deleted from the server")
    _print_skipped(local)
    pushed = "nothing to push" if found.none else "pushed"
    output.note(f"{pushed}: the server's workspace is at revision {listing.revision[:12]}")
    for problem in problems:
        where = f"{problem.file}:{problem.line}" if problem.line else problem.file
        output.note(f"[yellow]problem:[/yellow] {where}: {problem.message}")


def _texts(local: LocalFolder) -> dict[str, str]:
    texts: dict[str, str] = {}
    for path, data in local.files.items():
        try:
            texts[path] = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CliError(
                f"{local.root / path} is not UTF-8 text (byte {exc.start}): a workspace upload carries text only"
            ) from None
    return texts


@app.command()
def pull(
    folder: FolderArgument,
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete the folder's workspace files the server does not have.")
    ] = False,
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """Download the server's workspace into the folder.

    The folder is made if missing; new and changed files are written; files only in the folder are kept,
    unless --delete.
    """
    folder.mkdir(parents=True, exist_ok=True)
    local = read_folder(folder)
    with connect(profile, org) as client:
        listing = client.list_files()
        server = _server_files(listing)
        # What pushing the folder would do, seen from the server: its additions are the folder's own files.
        found = changes(server, local.etags)
        for path in [*found.added, *found.modified]:
            _write(folder, path, client.read_file(path))
    if delete:
        for path in found.deleted:
            (folder / path).unlink()
    if output_format == "json":
        output.print_json(
            {
                "revision": listing.revision,
                "written": [*found.added, *found.modified],
                "deleted": found.deleted if delete else [],
                "only_here": [] if delete else found.deleted,
            }
        )
        return
    rows = [
        *(("new", path) for path in found.added),
        *(("updated", path) for path in found.modified),
        *((("deleted" if delete else "only here"), path) for path in found.deleted),
    ]
    output.table(("CHANGE", "PATH"), rows, empty=f"up to date ({_files(found.unchanged)})")
    if delete or not found.deleted:
        output.note(f"The folder holds the server's revision {listing.revision[:12]}")
    else:
        output.note(
            f"The folder has the files of the server's revision {listing.revision[:12]}, and "
            f"{_files(len(found.deleted))} of its own (--delete removes them)"
        )


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _write(root: Path, path: str, data: bytes) -> None:
    from bifrost._internal.workspace import confined_path, write_atomically

    write_atomically(confined_path(root, path), data)
