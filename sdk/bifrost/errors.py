"""Errors an author raises, and errors Bifrost raises about a workflow's definition."""

from __future__ import annotations


class UserError(Exception):
    """Raise it to fail an execution with a message meant for the person who started it.

    The message is shown as the execution's error, without a traceback: use it for expected problems
    ("user not found", "licence pool empty"), and let other exceptions surface as bugs with their traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WorkflowDefinitionError(ValueError):
    """A `@workflow` or `@data_provider` definition is invalid: an unknown or wrong option, a bad signature.

    Raised when the module is imported; static discovery reports the same message as an error entry.
    """


class ParameterWarning(UserWarning):
    """A parameter's type cannot be described as a form field; the parameter accepts any JSON value."""
