"""Annotations rebuilt from source text, without importing it.

A module's imports tell what its names mean (`Literal` from typing, `date` from datetime, `BaseModel` from
pydantic, `workflow` from bifrost); classes the module itself defines on `BaseModel` or `Enum` are rebuilt
synthetically (`pydantic.create_model`, the functional Enum API) from their bodies. Anything else cannot be
known statically and is reported as unresolvable, which the schema builder turns into "any value".
"""

from __future__ import annotations

import ast
import collections.abc
import datetime
import decimal
import enum
import functools
import re
import typing
import uuid
from typing import Any

import pydantic

from bifrost.context import ExecutionContext
from bifrost.parameters import UNKNOWN_DEFAULT

_TYPING_NAMES: dict[str, Any] = {
    "Any": Any,
    "Optional": typing.Optional,
    "Union": typing.Union,
    "Literal": typing.Literal,
    "Annotated": typing.Annotated,
    "ClassVar": typing.ClassVar,
    "List": list,
    "Dict": dict,
    "Set": set,
    "FrozenSet": frozenset,
    "Tuple": tuple,
    "Sequence": collections.abc.Sequence,
    "Mapping": collections.abc.Mapping,
}

KNOWN_OBJECTS: dict[str, Any] = {
    **{f"builtins.{t.__name__}": t for t in (str, int, float, bool, bytes, list, dict, set, frozenset, tuple)},
    **{f"typing.{name}": value for name, value in _TYPING_NAMES.items()},
    **{f"typing_extensions.{name}": value for name, value in _TYPING_NAMES.items()},
    "collections.abc.Sequence": collections.abc.Sequence,
    "collections.abc.Mapping": collections.abc.Mapping,
    "datetime.date": datetime.date,
    "datetime.datetime": datetime.datetime,
    "datetime.time": datetime.time,
    "datetime.timedelta": datetime.timedelta,
    "uuid.UUID": uuid.UUID,
    "decimal.Decimal": decimal.Decimal,
    "enum.Enum": enum.Enum,
    "enum.StrEnum": enum.StrEnum,
    "enum.IntEnum": enum.IntEnum,
    "enum.auto": enum.auto,
    "pydantic.BaseModel": pydantic.BaseModel,
    "pydantic.Field": pydantic.Field,
    "pydantic.ConfigDict": pydantic.ConfigDict,
    "bifrost.ExecutionContext": ExecutionContext,
    "bifrost.context.ExecutionContext": ExecutionContext,
}


# What `from module import *` binds, for the modules whose names discovery understands.
_STAR_EXPORTS: dict[str, tuple[str, ...]] = {
    "bifrost": ("workflow", "data_provider", "ExecutionContext"),
    "typing": tuple(_TYPING_NAMES),
    "datetime": ("date", "datetime", "time", "timedelta"),
    "enum": ("Enum", "StrEnum", "IntEnum", "auto"),
    "pydantic": ("BaseModel", "Field", "ConfigDict"),
}
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_CLASS_CACHE_SIZE = 2048
_class_cache: dict[tuple[Any, ...], Any] = {}
_SUBSCRIPT_CACHE_SIZE = 4096
_subscript_cache: dict[tuple[Any, ...], Any] = {}


class Unresolvable(Exception):
    """An annotation (or a part of one) whose meaning cannot be known without importing the module."""


class ModuleNames:
    """What the top-level names of one module refer to, read from its imports, classes and constants."""

    def __init__(self, tree: ast.Module, source: str) -> None:
        self._source = source
        self.aliases: dict[str, str] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.constants: dict[str, ast.expr] = {}
        self._synthetic: dict[str, Any] = {}
        self._building: set[str] = set()
        self._quoted = 0
        for statement in _top_level(tree.body):
            self._record(statement)

    def _record(self, statement: ast.stmt) -> None:
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    self.aliases[top] = top
        elif isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
            for alias in statement.names:
                if alias.name == "*":
                    names = _STAR_EXPORTS.get(statement.module, ())
                    self.aliases.update({name: f"{statement.module}.{name}" for name in names})
                else:
                    self.aliases[alias.asname or alias.name] = f"{statement.module}.{alias.name}"
        elif isinstance(statement, ast.ClassDef):
            self.classes[statement.name] = statement
        elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name):
                self.constants[target.id] = statement.value
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and statement.value:
            self.constants[statement.target.id] = statement.value

    def qualified_name(self, node: ast.expr) -> str | None:
        """`typing.Literal` for `Literal` imported from typing, `bifrost.workflow` for `bf.workflow`, ..."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id in self.classes:
                return f"<local>.{node.id}"
            return f"builtins.{node.id}"
        if isinstance(node, ast.Attribute):
            owner = self.qualified_name(node.value)
            return f"{owner}.{node.attr}" if owner else None
        return None

    def literal(self, node: ast.expr) -> Any:
        """The value of a literal expression, or of a name bound to one at module level."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.literal(self.constants[node.id])
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise Unresolvable(ast.unparse(node)) from None

    def default_value(self, node: ast.expr) -> Any:
        """A parameter default: its literal value, an Enum member of a class of this module, or "unknown"."""
        if not isinstance(node, ast.Attribute):
            try:
                return self.literal(node)
            except Unresolvable:
                return UNKNOWN_DEFAULT
        try:
            owner = self.resolve(node.value)
        except Unresolvable:
            return UNKNOWN_DEFAULT
        if isinstance(owner, type) and issubclass(owner, enum.Enum) and node.attr in owner.__members__:
            return owner[node.attr]
        return UNKNOWN_DEFAULT

    def resolve(self, node: ast.expr) -> Any:
        """The Python type an annotation expression denotes; raises Unresolvable."""
        if isinstance(node, ast.Constant):
            if node.value is None:
                return None
            if isinstance(node.value, str):
                self._quoted += 1  # positions in the parsed string are in it, not in the module's lines
                try:
                    return self.resolve(ast.parse(node.value, mode="eval").body)
                except SyntaxError:
                    raise Unresolvable(node.value) from None
                finally:
                    self._quoted -= 1
            raise Unresolvable(ast.unparse(node))
        if isinstance(node, ast.Name | ast.Attribute):
            return self._named(node)
        if isinstance(node, ast.Subscript):
            key = None if self._quoted else self._subscript_key(node)
            if key is None:
                return self._subscript(node)
            built = _subscript_cache.get(key)
            if built is None:
                built = self._subscript(node)
                if len(_subscript_cache) >= _SUBSCRIPT_CACHE_SIZE:
                    _subscript_cache.clear()
                _subscript_cache[key] = built
            return built
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            try:
                return self.resolve(node.left) | self.resolve(node.right)
            except TypeError:
                raise Unresolvable(ast.unparse(node)) from None
        raise Unresolvable(ast.unparse(node))

    def _named(self, node: ast.Name | ast.Attribute) -> Any:
        name = self.qualified_name(node)
        if name is None:
            raise Unresolvable(ast.unparse(node))
        if name.startswith("<local>."):
            return self._local_class(name.removeprefix("<local>."))
        if name in KNOWN_OBJECTS:
            return KNOWN_OBJECTS[name]
        raise Unresolvable(ast.unparse(node))

    def _subscript_key(self, node: ast.Subscript) -> tuple[Any, ...] | None:
        """The text of a one-line annotation such as `Annotated[str, Field(max_length=5)]` with what each name in
        it means here: equal keys resolve to equal types, so files that repeat an annotation share one (building
        `Annotated` and `Field` objects is what resolving costs). None where the text is not at hand cheaply."""
        if node.end_lineno != node.lineno or node.end_col_offset is None:
            return None
        line = self._source_lines[node.lineno - 1]
        if not line.isascii():  # offsets count UTF-8 bytes
            return None
        text = line[node.col_offset : node.end_col_offset]
        meanings: list[tuple[str, Any]] = []
        for used in sorted(set(_IDENTIFIER.findall(text))):
            if used in self.aliases:
                meanings.append((used, self.aliases[used]))
            elif used in self.classes:
                meanings.append((used, self._class_fingerprint(used, frozenset())))
            elif used in self.constants:
                meanings.append((used, ast.dump(self.constants[used])))
        return text, tuple(meanings)

    def _subscript(self, node: ast.Subscript) -> Any:
        origin = self.resolve(node.value)
        elements = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if origin is typing.Literal:
            return typing.Literal[tuple(self.literal(element) for element in elements)]
        if origin is typing.Annotated:
            base = self.resolve(elements[0])
            return typing.Annotated[(base, *(self._metadata(element) for element in elements[1:]))]
        args = tuple(self.resolve(element) for element in elements)
        try:
            return origin[args if len(args) > 1 else args[0]]
        except TypeError:
            raise Unresolvable(ast.unparse(node)) from None

    def _metadata(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Call) and self.qualified_name(node.func) == "pydantic.Field":
            return self._field_call(node)
        return self.literal(node)

    def _field_call(self, node: ast.Call) -> Any:
        """`Field(...)` with literal arguments; a non-literal default becomes a factory of unknown value."""
        kwargs: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise Unresolvable(ast.unparse(node))
            if keyword.arg == "default_factory":
                kwargs["default_factory"] = _unknown_default
                continue
            kwargs[keyword.arg] = self.literal(keyword.value)
        if node.args:
            try:
                kwargs["default"] = self.literal(node.args[0])
            except Unresolvable:
                kwargs["default_factory"] = _unknown_default
        return pydantic.Field(**kwargs)

    def _local_class(self, name: str) -> Any:
        if name in self._synthetic:
            return self._synthetic[name]
        if name in self._building:
            raise Unresolvable(f"{name} (refers to itself)")
        self._building.add(name)
        try:
            key = self._class_fingerprint(name, frozenset())
            built = _class_cache.get(key)
            if built is None:
                built = self._build_class(self.classes[name])
                if len(_class_cache) >= _CLASS_CACHE_SIZE:
                    _class_cache.clear()
                _class_cache[key] = built
        finally:
            self._building.discard(name)
        self._synthetic[name] = built
        return built

    @functools.cached_property
    def _source_lines(self) -> list[str]:
        return self._source.splitlines()

    def _class_fingerprint(self, name: str, seen: frozenset[str]) -> tuple[Any, ...]:
        """A class's definition plus what each name it uses means here: equal fingerprints build equal
        classes, so files that repeat a class (a shared Enum, say) share one synthetic class and its schema."""
        node = self.classes[name]
        text = "\n".join(self._source_lines[node.lineno - 1 : node.end_lineno])
        meanings: list[tuple[str, Any]] = []
        for used in sorted(set(_IDENTIFIER.findall(text))):
            if used in self.classes and used not in seen and used != name:
                meanings.append((used, self._class_fingerprint(used, seen | {name})))
            elif used in self.aliases:
                meanings.append((used, self.aliases[used]))
            elif used in self.constants:
                meanings.append((used, ast.dump(self.constants[used])))
        return text, tuple(meanings)

    def _build_class(self, node: ast.ClassDef) -> Any:
        bases = [self.resolve(base) for base in node.bases]
        enum_bases = [b for b in bases if isinstance(b, type) and issubclass(b, enum.Enum)]
        if enum_bases:
            return self._build_enum(node, enum_bases[0], [b for b in bases if b not in enum_bases])
        model_bases = [b for b in bases if isinstance(b, type) and issubclass(b, pydantic.BaseModel)]
        if model_bases and len(bases) == 1:
            return self._build_model(node, model_bases[0])
        raise Unresolvable(node.name)

    def _build_enum(self, node: ast.ClassDef, base: type[enum.Enum], mixins: list[Any]) -> Any:
        members: list[tuple[str, Any]] = []
        for statement in node.body:
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target = statement.targets[0]
                if isinstance(target, ast.Name) and not target.id.startswith("_"):
                    members.append((target.id, self._enum_value(statement.value)))
        if len(mixins) > 1:
            raise Unresolvable(node.name)
        mixin = mixins[0] if mixins else None
        built = base(node.name, members, type=mixin)  # type: ignore[call-arg]
        built.__doc__ = ast.get_docstring(node)
        return built

    def _enum_value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Call) and self.qualified_name(node.func) == "enum.auto":
            return enum.auto()
        return self.literal(node)

    def _build_model(self, node: ast.ClassDef, base: type[pydantic.BaseModel]) -> Any:
        """The model class as its `class` statement would create it: annotations, defaults, config, doc."""
        namespace: dict[str, Any] = {"__annotations__": {}, "__module__": __name__, "__qualname__": node.name}
        namespace["model_config"] = pydantic.ConfigDict(defer_build=True)
        docstring = ast.get_docstring(node)
        if docstring is not None:
            namespace["__doc__"] = docstring
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                annotation = self.resolve(statement.annotation)
                if typing.get_origin(annotation) is typing.ClassVar:
                    continue
                namespace["__annotations__"][statement.target.id] = annotation
                if statement.value is not None:
                    namespace[statement.target.id] = self._model_default(statement.value)
            elif _assigns(statement, "model_config"):
                assert isinstance(statement, ast.Assign)
                namespace["model_config"] = pydantic.ConfigDict(**self._config(statement.value), defer_build=True)  # type: ignore[typeddict-item]
        try:
            return type(node.name, (base,), namespace)
        except (pydantic.PydanticUserError, TypeError, ValueError):
            raise Unresolvable(node.name) from None

    def _model_default(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Call) and self.qualified_name(node.func) == "pydantic.Field":
            return self._field_call(node)
        value = self.default_value(node)
        return pydantic.Field(default_factory=_unknown_default) if value is UNKNOWN_DEFAULT else value

    def _config(self, node: ast.expr) -> dict[str, Any]:
        if isinstance(node, ast.Call) and self.qualified_name(node.func) == "pydantic.ConfigDict" and not node.args:
            return {keyword.arg: self.literal(keyword.value) for keyword in node.keywords if keyword.arg}
        value = self.literal(node)
        if not isinstance(value, dict):
            raise Unresolvable(ast.unparse(node))
        return value


def _unknown_default() -> Any:
    """The factory of a default whose value only the imported module knows; never called by discovery."""
    return None


def _assigns(statement: ast.stmt, name: str) -> bool:
    return (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
        and statement.targets[0].id == name
    )


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, including those inside `if`/`try` blocks (guarded imports)."""
    statements: list[ast.stmt] = []
    for statement in body:
        statements.append(statement)
        if isinstance(statement, ast.If):
            statements.extend(_top_level(statement.body + statement.orelse))
        elif isinstance(statement, ast.Try):
            statements.extend(_top_level(statement.body + statement.orelse + statement.finalbody))
            for handler in statement.handlers:
                statements.extend(_top_level(handler.body))
    return statements
