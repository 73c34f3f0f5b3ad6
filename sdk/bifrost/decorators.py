"""`@workflow` and `@data_provider`: they validate their options, attach the function's info, and return the
function itself, so it stays an ordinary function (callable in a unit test)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from bifrost.errors import ParameterWarning
from bifrost.metadata import DataProviderInfo, RetryPolicy, WorkflowInfo, describe_data_provider, describe_workflow
from bifrost.signatures import function_shape

F = TypeVar("F", bound=Callable[..., Any])

WORKFLOW_ATTRIBUTE = "__bifrost_workflow__"
DATA_PROVIDER_ATTRIBUTE = "__bifrost_data_provider__"
_UNDESCRIBED_ATTRIBUTE = "__bifrost_undescribed__"

Attach = Callable[[Callable[..., Any], dict[str, Any], int], None]

_deferring: ContextVar[bool] = ContextVar("bifrost_deferring_descriptions", default=False)


@dataclass(frozen=True)
class _Undescribed:
    options: dict[str, Any]
    attach: Attach


@contextlib.contextmanager
def descriptions_deferred() -> Iterator[None]:
    """Within the block, `@workflow` and `@data_provider` keep their options and describe the function (and
    check the options) only when its info is asked for. A runner imports a module to call one function of it:
    describing every function there would cost a fresh process about half a millisecond each."""
    token = _deferring.set(True)
    try:
        yield
    finally:
        _deferring.reset(token)


@overload
def workflow(func: F, /) -> F: ...


@overload
def workflow(
    *,
    name: str | None = None,
    description: str | None = None,
    category: str | None = None,
    tags: Sequence[str] = (),
    execution_mode: Literal["sync", "async"] | None = None,
    schedule: str | None = None,
    timeout_seconds: int = 1800,
    endpoint_enabled: bool = False,
    retries: int | dict[str, Any] | RetryPolicy = 0,
    max_concurrency: int | None = None,
    resources: dict[str, Any] | None = None,
) -> Callable[[F], F]: ...


def workflow(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Mark a function as a workflow: `@workflow` or `@workflow(name=..., schedule=..., ...)`."""
    return _decorate(func, options, "@workflow", _attach_workflow)


@overload
def data_provider(func: F, /) -> F: ...


@overload
def data_provider(
    *,
    name: str | None = None,
    description: str | None = None,
    category: str | None = None,
    timeout_seconds: int = 10,
    cache_ttl_seconds: int = 300,
) -> Callable[[F], F]: ...


def data_provider(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Mark a function as a data provider: it returns the options of a form field (a list of items)."""
    return _decorate(func, options, "@data_provider", _attach_data_provider)


def workflow_info(func: Callable[..., Any]) -> WorkflowInfo:
    """The info `@workflow` attached to `func`; TypeError if it is not a workflow."""
    _describe(func)
    info = getattr(func, WORKFLOW_ATTRIBUTE, None)
    if not isinstance(info, WorkflowInfo):
        raise TypeError(f"{getattr(func, '__name__', func)!r} is not decorated with @workflow")
    return info


def data_provider_info(func: Callable[..., Any]) -> DataProviderInfo:
    """The info `@data_provider` attached to `func`; TypeError if it is not a data provider."""
    _describe(func)
    info = getattr(func, DATA_PROVIDER_ATTRIBUTE, None)
    if not isinstance(info, DataProviderInfo):
        raise TypeError(f"{getattr(func, '__name__', func)!r} is not decorated with @data_provider")
    return info


def _decorate(func: Callable[..., Any] | None, options: dict[str, Any], decorator: str, attach: Attach) -> Any:
    # stacklevel: warnings point at the decorated function, past _warn, attach, _attach_or_defer, and apply or
    # _decorate+workflow.
    if func is None:

        def apply(target: Callable[..., Any]) -> Callable[..., Any]:
            _require_function(target, decorator)
            _attach_or_defer(target, options, attach, 5)
            return target

        return apply
    _require_function(func, decorator)
    _attach_or_defer(func, options, attach, 6)
    return func


def _attach_or_defer(func: Callable[..., Any], options: dict[str, Any], attach: Attach, stacklevel: int) -> None:
    if _deferring.get():
        setattr(func, _UNDESCRIBED_ATTRIBUTE, _Undescribed(options, attach))
    else:
        attach(func, options, stacklevel)


def _describe(func: Callable[..., Any]) -> None:
    """Attach the info a decorator deferred (see `descriptions_deferred`)."""
    undescribed = vars(func).pop(_UNDESCRIBED_ATTRIBUTE, None) if hasattr(func, "__dict__") else None
    if isinstance(undescribed, _Undescribed):
        undescribed.attach(func, undescribed.options, 4)


def _require_function(target: Any, decorator: str) -> None:
    if not callable(target) or not hasattr(target, "__code__"):
        raise TypeError(
            f"{decorator} decorates a function; options go by keyword, as in {decorator}(name=...) "
            f"(got {target!r})"
        )


def _attach_workflow(func: Callable[..., Any], options: dict[str, Any], stacklevel: int) -> None:
    info = describe_workflow(function_shape(func), options)
    _warn("@workflow", info, stacklevel)
    setattr(func, WORKFLOW_ATTRIBUTE, info)


def _attach_data_provider(func: Callable[..., Any], options: dict[str, Any], stacklevel: int) -> None:
    info = describe_data_provider(function_shape(func), options)
    _warn("@data_provider", info, stacklevel)
    setattr(func, DATA_PROVIDER_ATTRIBUTE, info)


def _warn(decorator: str, info: WorkflowInfo | DataProviderInfo, stacklevel: int) -> None:
    for message in info.warnings:
        warnings.warn(f"{decorator} {info.function_name}: {message}", ParameterWarning, stacklevel=stacklevel)
