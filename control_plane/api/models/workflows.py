"""Response bodies of the registry's routes (defined in `bifrost.api`; workflows are described by
`bifrost.metadata.WorkflowInfo`); here, how each is made."""

from __future__ import annotations

from bifrost.api import workflows as api
from control_plane.registry import WorkspaceProblem


class WorkspaceProblemOut(api.WorkspaceProblemOut):
    @classmethod
    def of(cls, problem: WorkspaceProblem) -> WorkspaceProblemOut:
        return cls(file=problem.file, line=problem.line, message=problem.message)
