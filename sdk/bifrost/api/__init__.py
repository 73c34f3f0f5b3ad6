"""The request and response bodies of Bifrost's HTTP API, one module per area.

The control plane answers with them and `bifrost.client` reads them: one definition for both sides. Importing
them needs pydantic alone; workflows never need them.
"""

from bifrost.api.api_keys import ApiKeyCreated, ApiKeyIn, ApiKeyOut, ServiceKeyIn
from bifrost.api.audit import AuditEventOut, AuditPage
from bifrost.api.config import ConfigIn, ConfigOut
from bifrost.api.executions import (
    MAX_LOG_PAGE,
    AttemptOut,
    ExecuteRequest,
    ExecutionAccepted,
    ExecutionError,
    ExecutionOut,
    ExecutionPage,
    ExecutionStatus,
    LogLine,
    LogPage,
    ResultOut,
    RunnerDetails,
    RunnerOut,
    StatusChange,
    VariablesOut,
)
from bifrost.api.health import Readiness
from bifrost.api.orgs import MemberIn, MemberOut, OrgIn, OrgOut, OrgRole
from bifrost.api.schedules import (
    CatchUpPolicy,
    FireOut,
    OverlapPolicy,
    ScheduleIn,
    ScheduleOut,
    SchedulePatch,
    ScheduleSource,
)
from bifrost.api.secrets import RotationOut, SecretIn, SecretOut
from bifrost.api.sessions import SessionOut
from bifrost.api.users import UserIn, UserOut, UserPatch
from bifrost.api.workflow_access import AccessIn, AccessOut
from bifrost.api.workflows import WorkspaceProblemOut
from bifrost.api.workspace import WorkspaceFileOut, WorkspaceListing, WorkspaceUpload
from bifrost.metadata import DataProviderInfo, WorkflowInfo

__all__ = [
    "MAX_LOG_PAGE",
    "AccessIn",
    "AccessOut",
    "ApiKeyCreated",
    "ApiKeyIn",
    "ApiKeyOut",
    "AttemptOut",
    "AuditEventOut",
    "AuditPage",
    "CatchUpPolicy",
    "ConfigIn",
    "ConfigOut",
    "DataProviderInfo",
    "ExecuteRequest",
    "ExecutionAccepted",
    "ExecutionError",
    "ExecutionOut",
    "ExecutionPage",
    "ExecutionStatus",
    "FireOut",
    "LogLine",
    "LogPage",
    "MemberIn",
    "MemberOut",
    "OrgIn",
    "OrgOut",
    "OrgRole",
    "OverlapPolicy",
    "Readiness",
    "ResultOut",
    "RotationOut",
    "RunnerDetails",
    "RunnerOut",
    "ScheduleIn",
    "ScheduleOut",
    "SchedulePatch",
    "ScheduleSource",
    "SecretIn",
    "SecretOut",
    "ServiceKeyIn",
    "SessionOut",
    "StatusChange",
    "UserIn",
    "UserOut",
    "UserPatch",
    "VariablesOut",
    "WorkflowInfo",
    "WorkspaceFileOut",
    "WorkspaceListing",
    "WorkspaceProblemOut",
    "WorkspaceUpload",
]
