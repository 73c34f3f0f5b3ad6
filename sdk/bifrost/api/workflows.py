"""The registry: workflows are described by `bifrost.metadata.WorkflowInfo`; what keeps files from registering."""

from __future__ import annotations

from pydantic import BaseModel


class WorkspaceProblemOut(BaseModel):
    file: str
    line: int | None
    message: str
