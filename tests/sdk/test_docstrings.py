from __future__ import annotations

import inspect

from bifrost.docstrings import parse_docstring


def test_summary_is_the_first_paragraph_joined() -> None:
    doc = parse_docstring("Create a user\nin the directory.\n\nLonger text.")
    assert doc.summary == "Create a user in the directory."


def test_google_args_section_with_types_and_continuations() -> None:
    text = inspect.cleandoc(
        """
        Sync users.

        Args:
            source (str): Where users come from.
            limit: At most this many,
                across all pages.
            *extra: Ignored extras.

        Returns:
            dict: Not an argument.
        """
    )
    doc = parse_docstring(text)
    assert doc.summary == "Sync users."
    assert doc.params == {
        "source": "Where users come from.",
        "limit": "At most this many, across all pages.",
        "extra": "Ignored extras.",
    }


def test_empty_and_args_only_docstrings() -> None:
    assert parse_docstring(None).summary is None
    assert parse_docstring("   ").params == {}
    doc = parse_docstring("Args:\n    a: The a.")
    assert (doc.summary, doc.params) == (None, {"a": "The a."})
