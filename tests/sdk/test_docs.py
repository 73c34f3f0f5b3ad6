"""The author's guide and the workflow concept page: their examples decorate, discover and run."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from bifrost import data_provider_info, workflow_info
from bifrost._internal.discovery import discover_workspace
from tests.sdk.conftest import REPO_ROOT, Importer

GUIDE = REPO_ROOT / "docs" / "workflows.md"
# The concept page lives in the `shared/` folder beside the repository.
CONCEPT_PAGE = REPO_ROOT.parent / "shared" / "reference" / "workflows-concept.md"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

# The concept page calls services that only exist in its readers' systems; these stand in for exactly those
# names, and decorator-only fragments get a function to decorate.
_CONCEPT_PRELUDE = """\
from bifrost import context, workflow


class _Database:
    async def query(self, sql, *args):
        return []


db = _Database()


async def do_work(param):
    return param
"""


def python_blocks(markdown: str) -> list[str]:
    return _PYTHON_BLOCK.findall(markdown)


def check_blocks(root: Path, sources: dict[str, str], importer: Importer) -> int:
    """Write each block as a module, import it (running its code), and check discovery agrees with it."""
    root.mkdir(exist_ok=True)
    for file_name, source in sources.items():
        (root / file_name).write_text(source)
        importer(file_name)
    discovery = discover_workspace(root)
    assert discovery.errors == [] and discovery.conflicts == []
    for info in discovery.workflows:
        assert workflow_info(getattr(importer(info.file), info.function_name)) == info
    for provider in discovery.data_providers:
        assert data_provider_info(getattr(importer(provider.file), provider.function_name)) == provider
    return len(discovery.workflows) + len(discovery.data_providers)


def test_guide_examples_run_and_discover_like_they_import(
    tmp_path: Path, import_from: Callable[[Path], Importer]
) -> None:
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) >= 10
    sources = {f"guide_example_{index:02d}.py": block for index, block in enumerate(blocks)}
    assert check_blocks(tmp_path, sources, import_from(tmp_path)) >= len(blocks)


def test_guide_parameter_example_validates_like_it_says(
    tmp_path: Path, import_from: Callable[[Path], Importer]
) -> None:
    from bifrost._internal.schema import ParameterValidationError, validate_parameters

    [block] = [block for block in python_blocks(GUIDE.read_text()) if "def open_ticket" in block]
    (tmp_path / "tickets.py").write_text(block)
    info = workflow_info(import_from(tmp_path)("tickets.py").open_ticket)
    with pytest.raises(ParameterValidationError) as caught:
        validate_parameters(info.parameters_schema, {"title": "x" * 121, "requester": {}, "colour": "red"})
    assert {error.field: error.message for error in caught.value.errors} == {
        "title": "String should have at most 120 characters",
        "requester.email": "Field required",
        "colour": "unknown parameter",
    }


def concept_sources() -> list[str]:
    blocks = python_blocks(CONCEPT_PAGE.read_text())
    sources = []
    for block in blocks:
        body = textwrap.dedent(block)
        if body.rstrip().endswith(")") and "def " not in body:
            name = re.search(r'name="(\w+)"', body)
            body += f"\nasync def {name.group(1) if name else 'fragment'}(): ...\n"
        sources.append(_CONCEPT_PRELUDE + body)
    return sources


@pytest.mark.skipif(not CONCEPT_PAGE.exists(), reason="the shared concept page is not present on this machine")
def test_concept_page_examples_decorate_and_discover(
    tmp_path: Path, import_from: Callable[[Path], Importer]
) -> None:
    for index, source in enumerate(concept_sources()):
        root = tmp_path / f"block_{index:02d}"
        found = check_blocks(root, {f"concept_example_{index:02d}.py": source}, import_from(root))
        assert found >= 1, f"concept example {index} defines no workflow"
