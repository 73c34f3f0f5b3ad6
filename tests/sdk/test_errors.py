from __future__ import annotations

import pytest

from bifrost import UserError
from bifrost.errors import is_soft_failure


def test_user_error_carries_its_message() -> None:
    with pytest.raises(UserError) as caught:
        raise UserError("user not found")
    assert caught.value.message == "user not found" == str(caught.value)


@pytest.mark.parametrize(
    ("result", "soft_failure"),
    [
        ({"success": False, "error": "refused"}, True),
        ({"success": True}, False),
        ({"success": 0}, False),
        ({"error": "only an error key"}, False),
        ([{"success": False}], False),
        (None, False),
    ],
)
def test_only_success_false_marks_completed_with_errors(result: object, soft_failure: bool) -> None:
    assert is_soft_failure(result) is soft_failure
