"""What the runner knows as secret is found in the parameters it passes on, and masked in its own messages."""

from __future__ import annotations

import io
import logging
import sys
from types import FrameType

from bifrost._internal.redaction import MASK, Redactor
from bifrost_runner.redaction import redacted_handlers
from bifrost_runner.variables import MAX_VALUE_CHARS, capture_variables

SECRET = "runner-known-secret-5e21"


def test_secrets_are_found_wherever_they_occur_in_parameters() -> None:
    redactor = Redactor()
    redactor.add(SECRET)
    redactor.add("another-secret-not-passed")
    parameters = {"plain": 1, "nested": {"list": [f"Bearer {SECRET}"]}, f"key-{SECRET}": None}

    assert redactor.found_in(parameters) == [SECRET]
    assert redactor.found_in({"nested": [["nothing"]], "n": 3}) == []


def test_the_runners_own_messages_and_tracebacks_are_masked_while_the_workflow_runs() -> None:
    redactor = Redactor()
    redactor.add(SECRET)
    output = io.StringIO()
    owner = logging.getLogger("redaction_test_owner")
    logger = logging.getLogger("redaction_test_owner.module")  # a child logger, as the runner's modules have
    handler = logging.StreamHandler(output)
    owner.addHandler(handler)
    try:
        with redacted_handlers(owner, redactor):
            logger.warning("refused %s", SECRET)
            try:
                raise RuntimeError(f"failed with {SECRET}")
            except RuntimeError:
                logger.exception("the call failed")
        logger.warning("after the run: %s", "plain")
    finally:
        owner.removeHandler(handler)
    text = output.getvalue()
    assert SECRET not in text
    assert f"refused {MASK}" in text
    assert f"RuntimeError: failed with {MASK}" in text
    assert "after the run: plain" in text
    assert handler.filters == []


def test_a_cut_never_leaves_part_of_a_secret() -> None:
    redactor = Redactor()
    redactor.add(SECRET)
    text = "a" * 95 + SECRET + "b" * 100

    head, covered = redactor.head(text, 100)  # the cut would go through the secret: it is left out whole
    assert (head, covered) == ("a" * 95, 95)
    assert redactor.head(text, 200) == ("a" * 95 + MASK + "b" * (200 - 95 - len(SECRET)), 200)
    assert redactor.head("short " + SECRET, 100) == ("short " + MASK, 6 + len(SECRET))


class Holder:
    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Holder({'z' * 190}{self.token})"


def test_captured_variables_cut_around_secrets() -> None:
    redactor = Redactor()
    redactor.add(SECRET)

    def workflow() -> tuple[FrameType, list[object]]:
        long_text = "c" * (MAX_VALUE_CHARS - 5) + SECRET + "c" * 10_000
        nested = [{"d" * 195 + SECRET}]  # a set: shown by repr, its string cut at 200 characters
        holder = Holder(SECRET)
        return sys._getframe(), [long_text, nested, holder]

    frame, _ = workflow()
    variables = capture_variables(frame, set(), redactor)
    shown = str(variables)
    assert set(variables) == {"long_text", "nested", "holder"}
    for fragment in (SECRET[:5], SECRET[-5:]):
        assert fragment not in shown
    assert variables["long_text"].endswith(f"[{len(SECRET) + 10_000:,} more characters]")
