"""`renew_agreement`: only the server records an archive timestamp, only on a sealed
agreement, only on top of the revision the ledger recorded — also after the session ended."""

from __future__ import annotations

import pytest

from rooms.commands import SERVER_ONLY
from rooms.errors import CommandError
from tests.unit.rooms.test_agreement_records import frozen, rec, run  # noqa: F401 - fixture


def _renewal(previous: str, new: str = "9" * 64) -> list[dict]:
    return [rec("agreement.renewed", version=1, previous_pdf_sha256=previous, pdf_sha256=new)]


def _seal(service, state, med, a, b) -> None:
    for pid, digest in ((a, "2"), (b, "3"), (med, "4")):
        events = [rec("signature.embedded", participant_id=pid, pdf_sha256=digest * 64)]
        run(service, state, pid, type="sign_agreement", events=events)
    run(
        service,
        state,
        med,
        type="seal_agreement",
        events=[rec("agreement.sealed", pdf_sha256="5" * 64)],
    )


def test_renewal_after_the_end_moves_the_recorded_revision(service, frozen):  # noqa: F811
    state, ids, med, a, b = frozen
    with pytest.raises(CommandError) as info:  # not sealed yet
        run(service, state, "system", type="renew_agreement", events=_renewal("1" * 64))
    assert info.value.code == "conflict"
    _seal(service, state, med, a, b)
    run(service, state, med, type="end_session")
    with pytest.raises(CommandError) as info:  # not based on the recorded revision
        run(service, state, "system", type="renew_agreement", events=_renewal("4" * 64))
    assert info.value.code == "conflict"
    with pytest.raises(CommandError) as info:  # a person may not
        run(service, state, med, type="renew_agreement", events=_renewal("5" * 64))
    assert info.value.code in ("forbidden", "ended")
    run(service, state, "system", type="renew_agreement", events=_renewal("5" * 64))
    assert service.state(state.id).agreement["pdf_sha256"] == "9" * 64
    assert "renew_agreement" in SERVER_ONLY
