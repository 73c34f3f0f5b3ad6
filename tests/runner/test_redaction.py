"""What the runner knows as secret is found in the parameters it passes on, and masked in its own messages."""

from __future__ import annotations

import io
import logging

from bifrost_runner.redaction import MASK, Redactor, redacted_handlers

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
