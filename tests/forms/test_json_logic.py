"""Visibility conditions: the JSON Logic subset means what json-logic-js makes of it, so a page evaluating a
condition in the browser and the server evaluating it on submit agree. The expected values below are those
json-logic-js 2.0.5 gives."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.forms.json_logic import RuleError, evaluate, fields_read, truthy


def nested(depth: int) -> Any:
    value: Any = {"var": "a"}
    for _ in range(depth):
        value = {"!": [value]}
    return value


DATA = {"name": "Ada", "count": 3, "none": None, "tags": ["a", "b"], "zero": 0, "empty": ""}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"var": "name"}, "Ada"),
        ({"var": ["name"]}, "Ada"),
        ({"var": ["missing", "fallback"]}, "fallback"),
        ({"var": "missing"}, None),
        ({"var": ["none", "fallback"]}, None),  # a field given as null is null, not the default
        ({"==": [1, "1"]}, True),
        ({"==": [0, False]}, True),
        ({"==": [None, False]}, False),
        ({"==": [None, None]}, True),
        ({"==": [[1, 2], "1,2"]}, True),
        ({"==": [[], 0]}, True),
        ({"==": ["", 0]}, True),
        ({"==": [" 12 ", 12]}, True),
        ({"==": ["0x1f", 31]}, True),
        ({"==": [1e21, "1e+21"]}, True),
        ({"==": [{"var": "tags"}, "a,b"]}, True),
        ({"===": [1, "1"]}, False),
        ({"===": [1, 1.0]}, True),
        ({"!=": ["a", "b"]}, True),
        ({"!==": [1, "1"]}, True),
        ({"!": [[]]}, True),
        ({"!": {"var": "zero"}}, True),
        ({"!!": ["0"]}, True),
        ({"!!": [{"var": "empty"}]}, False),
        ({"and": [True, "a", 3]}, 3),
        ({"and": [True, "", 3]}, ""),
        ({"or": [False, 0, "a"]}, "a"),
        ({"or": [False, 0]}, 0),
        ({"<": [1, 2, 3]}, True),
        ({"<": [1, 1, 3]}, False),
        ({"<=": [1, 1, 3]}, True),
        ({"<": ["11", "2"]}, True),
        ({"<": ["11", 2]}, False),
        ({"<": [None, 1]}, True),
        ({"<": ["a", 1]}, False),
        ({">": [{"var": "count"}, 2]}, True),
        ({">=": ["b", "a"]}, True),
        ({"in": ["Spring", "Springfield"]}, True),
        ({"in": [1, "a1"]}, True),
        ({"in": ["", ""]}, False),
        ({"in": ["a", {"var": "tags"}]}, True),
        ({"in": [1, ["1"]]}, False),
        ({"in": ["a", 5]}, False),
        ({"if": [True, "yes", "no"]}, "yes"),
        ({"if": [False, 1, False, 2, 3]}, 3),
        ({"if": [False, 1]}, None),
        ({"if": [{"var": "tags"}, "tagged", "untagged"]}, "tagged"),
        ([1, {"var": "count"}], [1, 3]),
        ("text", "text"),
    ],
)
def test_evaluates_as_json_logic_js(rule: Any, expected: Any) -> None:
    fields_read(rule, {**DATA, "missing": None})
    result = evaluate(rule, DATA)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "expected"), [([], False), ([0], True), ({}, True), ("0", True), (0.0, False), (None, False)]
)
def test_truth_is_javascripts_but_an_empty_list_is_false(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


def test_reports_the_fields_a_condition_reads() -> None:
    rule = {"and": [{"var": "a"}, {"!": {"var": ["b", {"var": "c"}]}}]}
    assert fields_read(rule, {"a": 1, "b": 1, "c": 1, "d": 1}) == {"a", "b", "c"}
    assert fields_read(nested(15), {"a": 1}) == {"a"}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"var": "later"}, "reads field 'later', which is not a field above this one (those are: a)"),
        ({"var": ""}, '"var" takes a field name'),
        ({"var": ["a", 1, 2]}, '"var" takes a field name'),
        ({"eval": "1"}, "unknown operator 'eval'"),
        ({"==": [1]}, "'==' takes 2 values, not 1"),
        ({">": [1, 2, 3]}, "'>' takes 2 values, not 3"),
        ({"and": []}, "'and' takes at least 1 values, not 0"),
        ({"==": [1, 2], "!=": [1, 2]}, "exactly one operator"),
        (nested(33), "nests deeper than 32 levels"),
        ([{"var": "a"}] * 501, "more than 500 parts"),
    ],
)
def test_refuses_what_it_does_not_support(rule: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fields_read(rule, {"a": 1})
