"""Bifrost's SDK: what a workflow author imports.

    from bifrost import workflow, data_provider, context, ExecutionContext, UserError
"""

from bifrost.context import ExecutionContext, config, context, secrets, workflows
from bifrost.decorators import data_provider, data_provider_info, workflow, workflow_info
from bifrost.errors import UserError, WorkflowDefinitionError
from bifrost.metadata import DataProviderInfo, Resources, RetryPolicy, WorkflowInfo

__all__ = [
    "DataProviderInfo",
    "ExecutionContext",
    "Resources",
    "RetryPolicy",
    "UserError",
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
