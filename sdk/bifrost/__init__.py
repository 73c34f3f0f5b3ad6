"""Bifrost's SDK: what a workflow author imports.

    from bifrost import workflow, data_provider, context, ExecutionContext, UserError

`bifrost._internal` is the contract between the runner and the control plane (the event protocol, workspace
revisions, parameter validation, static discovery): nothing a workflow needs, and it changes without notice.
"""

from bifrost.context import ExecutionContext, OrganizationInfo, UserInfo, config, context, secrets, workflows
from bifrost.decorators import data_provider, data_provider_info, workflow, workflow_info
from bifrost.errors import UserError, WorkflowDefinitionError
from bifrost.metadata import DataProviderInfo, Resources, RetryPolicy, WorkflowInfo

__all__ = [
    "DataProviderInfo",
    "ExecutionContext",
    "OrganizationInfo",
    "Resources",
    "RetryPolicy",
    "UserError",
    "UserInfo",
    "WorkflowDefinitionError",
    "WorkflowInfo",
    "config",
    "context",
    "data_provider",
    "data_provider_info",
    "secrets",
    "workflow",
    "workflow_info",
    "workflows",
]
