"""Response bodies of the registry's routes (workflows are described by `bifrost.metadata.WorkflowInfo`)."""

from __future__ import annotations

from pydantic import BaseModel

from control_plane.registry import WorkspaceProblem


class WorkspaceProblemOut(BaseModel):
    file: str
    line: int | None
    message: str

    @classmethod
    def of(cls, problem: WorkspaceProblem) -> WorkspaceProblemOut:
        return cls(file=problem.file, line=problem.line, message=problem.message)
