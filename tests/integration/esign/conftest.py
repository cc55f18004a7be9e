import datetime as dt

import pytest

from esign.ceremony import SignatureCeremony
from esign.phone import PythonPhone
from esign.pki import LocalPki, local_timestamp_authority
from esign.tsa import AuthorityTimeStamper
from tests.unit.esign.samples import attestation, sample_agreement  # noqa: F401 - re-exported


class Clock:
    """A clock the tests can move forward; starts at real time."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, **kwargs) -> None:
        self.offset += dt.timedelta(**kwargs)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return LocalPki.open(tmp_path_factory.mktemp("pki"), b"integration passphrase", "Test Org")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_ceremony(pki, tmp_path, clock):
    counter = iter(range(1000))

    async def make(agreement=None):
        ceremony = SignatureCeremony(
            pki,
            AuthorityTimeStamper(local_timestamp_authority(pki, clock=clock)),
            tmp_path / f"store{next(counter)}",
            clock=clock,
        )
        await ceremony.freeze(agreement or sample_agreement())
        return ceremony

    return make


def enrol(ceremony, participant_id, phone=None) -> PythonPhone:
    phone = phone or PythonPhone(participant_id)
    enrolment, events = ceremony.enrol(
        phone.enrol_request(ceremony.challenge(participant_id)), attestation(participant_id)
    )
    phone.accept(enrolment)
    assert events[0]["type"] == "cert.issued"
    return phone


async def sign_turn(ceremony, participant_id, phone=None, ledger_head="ab" * 32):
    phone = phone or enrol(ceremony, participant_id)
    phone.review(ceremony.pdf)
    request, _ = await ceremony.prepare(participant_id, ledger_head)
    receipt, events = await ceremony.finish(phone.sign(request))
    return phone, receipt, events
