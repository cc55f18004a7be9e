"""A refusal on the visits pages is a page with its status and a title in both languages; a
visit served by another node that cannot be reached right now is 503 (try again), not 400."""

from __future__ import annotations

import pytest

from signaling.visits_console import VisitsConsole
from visits.model import VisitError


@pytest.mark.parametrize(
    "code,status,words",
    [
        ("invalid", 400, "Invalid input"),
        ("not_found", 404, "Not found"),
        ("session_moving", 503, "try again"),
        ("unavailable", 503, "did not answer"),
        ("never_heard_of", 400, "never_heard_of"),
    ],
)
def test_a_refusal_says_what_happened_with_its_status(code, status, words):
    response = VisitsConsole._refuse(VisitError(code, "why"))
    assert response.status == status
    assert words in response.text and f"data-code='{code}'" in response.text
