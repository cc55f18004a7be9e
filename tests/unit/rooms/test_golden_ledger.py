"""Golden vectors for the ledger: a fixed session whose hashes are pinned here, literally.

``tests/golden/ledger-mediation.jsonl`` is the JSON-lines export (``esign.evidence.ledger_jsonl``,
the format of ``evidence.zip``'s ``ledger.jsonl``) of a short real mediation session: created,
three connects, consents, two admissions, a caucus with a chat message in Chinese, an agreement
draft, a dropped connection, the end. It was made once by the code of its commit and must never be
regenerated to make these tests pass: a failure here means the canonical encoding of events
(``rooms/events.py``), the way the ledger seals and stores them (``rooms/ledger.py``) or the
export format changed, and every hash already stored in a ledger, agreement or evidence bundle
would stop verifying.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from esign.evidence import ledger_jsonl
from rooms.events import GENESIS, Event, EventDraft, canonical_bytes, event_hash
from rooms.ledger import SqliteLedgerStore, verify_chain

FIXTURE = Path(__file__).resolve().parents[2] / "golden" / "ledger-mediation.jsonl"
FIXTURE_SHA256 = "519ef3095e7ef94cb848861daa0fcf5dc51c8e8310858ccf087143c4431a6af6"
SESSION = "s-ead2dfb9939c3890"
PINNED = [
    "5ff359b99d855e10a0b05e9b0517b94058f07fb8419dacf0d6d8860e12ae2b36",  # 1
    "2105fdc4d34d2bc2ce120cd78b047ba7ae679709de3cba7f12d599666fa31b5a",  # 2
    "4b91a03c8c2f49d3dbe87d6c169ca7fc8711818b70aa52eb7ff74e38563cd71f",  # 3
    "0848ecf2a25af2a251b8f6cfa35b9b3e05f00f2edf206abad6e90cb13aaad890",  # 4
    "2a2868dc287658ba3b6d55e4ef5f8825e669006bc262c756708cdc3df987783c",  # 5
    "a6185f64b2d63bf170690c8f729fbcf19f1263873da6a5c28db5b04794435388",  # 6
    "98e6d13469256c56c42dfcf5a26195f216d67f639cf2d1f2f4018a67adcf5e8b",  # 7
    "56385d3931b0ac2bf1b1ad7dade56e1f1d5ae45aef002b49a6f334e041679c1d",  # 8
    "a2fe31e5c776e08d9e6f83f7e7c4da99f8889705e7c425665272d116140ee25b",  # 9
    "e798e3d02a535ba5ccfcde100d4182dcfe2b5991d87c20f2767d60ac75fe1f68",  # 10
    "b0d5a488bcb219edcf26f1d6f7a3c697e9e95e45c706ab7ce9388e74369cfbf4",  # 11
    "d59a3715e74bf94a292b63afbd4e46dab52bb49cb9e0aa31812bfdd1dc00bea0",  # 12
    "97e0f5f230d462155e3a438bf4b2187a79ee1eebc07b118d3c21bbf1abe4e4bf",  # 13
    "bf70826b016f8c2d3e308b64eca2c916bb168755a2c7670070f54d25fccf40a7",  # 14
    "2222691ccde2b7ba451d58892598fff2fe15b396672162c88070c29d86a4de2b",  # 15
    "d0c6d7b33953b4cafa17487a0261c18fbab68c5ce298243bb9cef520c3c70da2",  # 16
    "f2a49c8977821fb61e464f769bf0e3cb3426d5df469ba17844a29640f6aca347",  # 17
    "30048955d0e9675825dbe3b226d5547bf22814b18528ed9101ad0ee2839c6b27",  # 18
    "f9d367fa14ec09c81f9ade30e2c143e23f960b5aa3a194b005c032fdf884b99c",  # 19
    "2a5800f05e201d57cf11cf899d51a345c0fea66d6ab18a065530d7787eaf2e3d",  # 20
]
# The exact bytes hashed for event 15 (non-ASCII text, an em dash, escaped quotes, a float
# timestamp that is not exact in binary): keys sorted, compact, UTF-8 as is.
CHAT_CANONICAL = (
    '{"actor":"p-faed8c68","data":{"participant":"p-faed8c68","space":"caucus:a",'
    '"text":"我们可以接受分期 — we can accept instalments \\"quoted\\""},'
    '"prev":"bf70826b016f8c2d3e308b64eca2c916bb168755a2c7670070f54d25fccf40a7","seq":15,'
    '"session":"s-ead2dfb9939c3890","ts":1767225615.6499987,"type":"chat.message"}'
).encode()


def fixture_events() -> list[dict]:
    return [msgspec.json.decode(line) for line in FIXTURE.read_bytes().splitlines()]


def test_the_fixture_is_the_one_the_hashes_were_pinned_for():
    assert hashlib.sha256(FIXTURE.read_bytes()).hexdigest() == FIXTURE_SHA256
    events = fixture_events()
    assert [e["seq"] for e in events] == list(range(1, len(PINNED) + 1))
    assert {e["session"] for e in events} == {SESSION}


def test_canonical_bytes_of_one_event_are_pinned():
    e = fixture_events()[14]
    got = canonical_bytes(
        e["session"], e["seq"], e["ts"], e["actor"], e["type"], e["data"], e["prev"]
    )
    assert got == CHAT_CANONICAL
    assert hashlib.sha256(CHAT_CANONICAL).hexdigest() == PINNED[14]


@pytest.mark.parametrize("seq", range(1, len(PINNED) + 1))
def test_each_event_rehashes_to_its_pinned_digest(seq):
    e = fixture_events()[seq - 1]
    digest = event_hash(
        e["session"], e["seq"], e["ts"], e["actor"], e["type"], e["data"], e["prev"]
    )
    assert digest == PINNED[seq - 1] == e["hash"]
    assert e["prev"] == (PINNED[seq - 2] if seq > 1 else GENESIS)


def test_the_chain_verifies():
    events = [msgspec.convert(e, Event) for e in fixture_events()]
    assert verify_chain(events) == []


def test_the_store_seals_the_same_chain_and_exports_the_same_bytes(tmp_path):
    """Appending the same drafts to a fresh SQLite ledger and reading them back gives the pinned
    hashes, and the JSON-lines export of what was read is the fixture, byte for byte."""
    store = SqliteLedgerStore(tmp_path / "ledger.sqlite3")
    try:
        drafts = [EventDraft(e["ts"], e["actor"], e["type"], e["data"]) for e in fixture_events()]
        sealed = store.append(SESSION, drafts[:10])
        sealed += store.append(SESSION, drafts[10:], expected_seq=10)
        assert [e.hash for e in sealed] == PINNED
        read = store.read(SESSION)
        assert [e.hash for e in read] == PINNED
        assert ledger_jsonl([e.to_dict() for e in read]) == FIXTURE.read_bytes()
    finally:
        store.close()
