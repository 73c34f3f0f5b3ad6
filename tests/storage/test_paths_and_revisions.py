from __future__ import annotations

from pathlib import Path

import pytest

from bifrost._internal.workspace import (
    Manifest,
    S3Location,
    WorkspacePathError,
    diff_manifests,
    normalize_workspace_path,
    parse_recorded_manifest,
    parse_workspace_url,
)
from control_plane.workspace_store import WorkspaceStoreError


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("hello.py", "hello.py"),
        ("./billing/invoices.py", "billing/invoices.py"),
        ("billing//data/rates.json", "billing/data/rates.json"),
        ("docs/README.md", "docs/README.md"),
        ("config/settings.YAML", "config/settings.YAML"),
        ("reports/with space.csv", "reports/with space.csv"),
    ],
)
def test_acceptable_paths_are_made_canonical(raw: str, canonical: str) -> None:
    assert normalize_workspace_path(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("../secrets.py", "'..' would leave the workspace"),
        ("lib/../../etc/passwd.txt", "'..' would leave the workspace"),
        ("/etc/hosts.txt", "absolute paths are not allowed"),
        ("lib\\evil.py", "backslash"),
        ("evil\x00.py", "NUL byte"),
        ("line\nbreak.py", "control character"),
        ("lib/__pycache__/mod.cpython-311.py", "__pycache__"),
        ("lib/mod.pyc", "compiled Python"),
        (".env", "hidden name '.env'"),
        (".bifrost/revisions/x.json", "hidden name '.bifrost'"),
        ("tools/run.sh", ".sh files are not accepted"),
        ("Makefile", "files without an extension are not accepted"),
        ("./", "names the workspace root"),
        ("a" * 1030 + ".py", "longer than 1024 bytes"),
    ],
)
def test_bad_paths_are_refused_with_the_path_and_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(WorkspacePathError) as caught:
        normalize_workspace_path(raw)
    assert reason in str(caught.value)
    assert repr(raw)[:40].rstrip("'") in str(caught.value)
    assert caught.value.path == raw


def test_revision_depends_on_content_only_not_on_listing_order() -> None:
    one = Manifest(files={"a.py": "1", "b/c.py": "2"})
    same_in_other_order = Manifest(files={"b/c.py": "2", "a.py": "1"})
    edited = Manifest(files={"a.py": "1", "b/c.py": "3"})
    renamed = Manifest(files={"a2.py": "1", "b/c.py": "2"})
    assert one.revision == same_in_other_order.revision
    assert len({one.revision, edited.revision, renamed.revision}) == 3
    assert len(one.revision) == 64


def test_diff_names_added_changed_and_removed_files() -> None:
    old = Manifest(files={"keep.py": "k", "edit.py": "e1", "gone.py": "g"})
    new = Manifest(files={"keep.py": "k", "edit.py": "e2", "new.py": "n"})
    diff = diff_manifests(old, new)
    assert diff.added == {"new.py"}
    assert diff.changed == {"edit.py"}
    assert diff.removed == {"gone.py"}
    assert not diff.is_empty
    assert diff_manifests(new, new).is_empty


def test_a_recorded_manifest_that_does_not_hash_to_its_revision_is_rejected() -> None:
    manifest = Manifest(files={"a.py": "1"})
    assert parse_recorded_manifest(manifest.model_dump_json().encode(), manifest.revision) == manifest
    altered = Manifest(files={"a.py": "2"}).model_dump_json().encode()
    with pytest.raises(WorkspaceStoreError, match="it was altered"):
        parse_recorded_manifest(altered, manifest.revision)
    with pytest.raises(WorkspaceStoreError, match="unreadable"):
        parse_recorded_manifest(b"{not json", manifest.revision)


def test_workspace_urls_name_a_folder_or_a_bucket_and_prefix(tmp_path: Path) -> None:
    assert parse_workspace_url(f"file://{tmp_path}") == tmp_path.resolve()
    assert parse_workspace_url(str(tmp_path)) == tmp_path.resolve()
    assert parse_workspace_url("s3://flows/teams/ops/") == S3Location(bucket="flows", prefix="teams/ops/")
    assert parse_workspace_url("s3://flows") == S3Location(bucket="flows", prefix="")
    with pytest.raises(ValueError, match="names no bucket"):
        parse_workspace_url("s3:///prefix")
    with pytest.raises(ValueError, match="unsupported scheme 'gs'"):
        parse_workspace_url("gs://bucket/prefix")
    with pytest.raises(ValueError, match="cannot name a host"):
        parse_workspace_url("file://server/share")
