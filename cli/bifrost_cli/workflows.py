"""`bifrost workflows`: what the server's workspace defines."""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bifrost_cli import output
from bifrost_cli.options import OrgOption, Output, OutputOption, ProfileOption, connect

if TYPE_CHECKING:
    from bifrost.api import WorkflowInfo

app = typer.Typer(name="workflows", help="The workflows the server's workspace defines.")


@app.command("list")
def list_workflows(
    org: OrgOption = None, profile: ProfileOption = None, output_format: OutputOption = Output.TABLE
) -> None:
    """Every workflow, with its category, mode and description."""
    with connect(profile, org) as client:
        workflows = client.list_workflows()
    output.listing(
        output_format,
        workflows,
        ("NAME", "CATEGORY", "MODE", "DESCRIPTION"),
        lambda w: (w.name, w.category, w.execution_mode, (w.description or "").split("\n")[0]),
        empty="no workflows",
    )


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="The workflow's name.", show_default=False)],
    org: OrgOption = None,
    profile: ProfileOption = None,
    output_format: OutputOption = Output.TABLE,
) -> None:
    """One workflow: where it is defined, how it runs, its parameters, and how to run it."""
    with connect(profile, org) as client:
        workflow = client.get_workflow(name)
    if output_format == "json":
        output.print_json(workflow)
        return
    out = output.stdout()
    out.print(f"[bold]{workflow.name}[/bold]  {workflow.file}:{workflow.line}")
    if workflow.description:
        out.print(workflow.description, markup=False)
    details = [
        f"mode: {workflow.execution_mode}",
        f"timeout: {workflow.timeout_seconds} s",
        *([f"category: {workflow.category}"] if workflow.category else []),
        *([f"schedule: {workflow.schedule}"] if workflow.schedule else []),
        *(["endpoint: POST /api/endpoints/" + workflow.name] if workflow.endpoint_enabled else []),
        *([f"tags: {', '.join(workflow.tags)}"] if workflow.tags else []),
    ]
    out.print(" · ".join(details), markup=False)
    out.print()
    output.table(
        ("PARAMETER", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"), parameter_rows(workflow), empty="no parameters"
    )
    out.print()
    out.print(example_run(workflow), markup=False)


def parameter_rows(workflow: WorkflowInfo) -> list[tuple[str, str, str, str, str]]:
    schema = workflow.parameters_schema
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        default = "" if "default" not in prop else json.dumps(prop["default"], ensure_ascii=False)
        rows.append((name, type_of(prop), "yes" if name in required else "", default, prop.get("description", "")))
    return rows


def type_of(prop: dict[str, Any]) -> str:
    """A parameter's type, short: `string`, `integer | null`, `list[string]`, `"a" | "b"`."""
    if "enum" in prop:
        return " | ".join(json.dumps(value) for value in prop["enum"])
    if "anyOf" in prop:
        return " | ".join(type_of(option) for option in prop["anyOf"])
    kind = prop.get("type")
    if kind == "array":
        return f"list[{type_of(prop.get('items', {}))}]"
    if kind == "object":
        return "object"
    if isinstance(kind, str):
        return kind
    return "any"


def example_run(workflow: WorkflowInfo) -> str:
    """A `bifrost run` line with each required parameter."""
    schema = workflow.parameters_schema
    words = ["bifrost", "run", workflow.name]
    for name in schema.get("required", []):
        prop = schema.get("properties", {}).get(name, {})
        words += ["-p", _example(name, prop)]
    return " ".join(shlex.quote(word) for word in words)


def _example(name: str, prop: dict[str, Any]) -> str:
    if prop.get("enum"):
        first = prop["enum"][0]
        return f"{name}={first}" if isinstance(first, str) else f"{name}:={json.dumps(first)}"
    kind = prop.get("type")
    if kind in ("array", "object") or "anyOf" in prop:
        return f"{name}:=<{type_of(prop)} as JSON>"
    return f"{name}=<{type_of(prop)}>"
