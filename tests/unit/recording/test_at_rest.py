"""Keys, sealed segments, the media clock and the manifest: the recorder's pure parts."""

from __future__ import annotations

import json

import pytest
from cryptography.exceptions import InvalidTag

from recording.keys import DATA_KEY_FILE, MASTER_FILE, DataKey, MasterKey
from recording.manifest import manifest, restart_gap
from recording.recorder import _Track
from recording.sealed import MAGIC, open_sealed, read_header, seal
from rooms.events import EventDraft
from rooms.events import seal as seal_event


def test_master_key_file_is_private_and_stable(tmp_path):
    first = MasterKey.load(tmp_path)
    path = tmp_path / MASTER_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    again = MasterKey.load(tmp_path)
    assert again.id == first.id and path.stat().st_mode & 0o777 == 0o600
    given = MasterKey.load(tmp_path, given="11" * 32)
    assert given.id != first.id
    with pytest.raises(ValueError):
        MasterKey.load(tmp_path, given="11" * 16)


def test_data_key_is_wrapped_for_its_session_only(tmp_path):
    master = MasterKey.load(tmp_path)
    key = DataKey.for_session(master, tmp_path / "s-1", "s-1")
    record = json.loads((tmp_path / "s-1" / DATA_KEY_FILE).read_text())
    assert record["master_key_id"] == master.id and record["key_id"] == key.id
    assert key.key.hex() not in json.dumps(record)
    assert DataKey.for_session(master, tmp_path / "s-1", "s-1").key == key.key
    with pytest.raises(InvalidTag):  # moved to another session: does not unwrap
        master.unwrap(record | {"session": "s-2"})
    with pytest.raises(ValueError):
        MasterKey(b"\x22" * 32).unwrap(record)


def test_a_sealed_segment_opens_only_unchanged_and_with_its_key(tmp_path):
    master = MasterKey.load(tmp_path)
    key = DataKey.for_session(master, tmp_path / "s", "s")
    header = {"session": "s", "participant": "p-00000001", "index": 3}
    sealed = seal(key, header, b"\x1aE\xdf\xa3 webm bytes")
    assert sealed.data.startswith(MAGIC) and b"webm bytes" not in sealed.data
    assert read_header(sealed.data) == header | {"key_id": key.id}
    assert open_sealed(key, sealed.data)[1] == b"\x1aE\xdf\xa3 webm bytes"
    renamed = sealed.data.replace(b'"index": 3', b'"index": 4')
    with pytest.raises(InvalidTag):
        open_sealed(key, renamed)
    flipped = bytearray(sealed.data)
    flipped[-20] ^= 1
    with pytest.raises(InvalidTag):
        open_sealed(key, bytes(flipped))
    other = DataKey.for_session(master, tmp_path / "t", "t")
    with pytest.raises(ValueError):
        open_sealed(other, sealed.data)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (rtp timestamp, arrival seconds) -> media seconds
        ([(1000, 5.0), (1000 + 90000, 6.0), (1000 + 180000, 7.0)], [5.0, 6.0, 7.0]),
        # a pause in sending stays a pause (the RTP clock ran on)
        ([(0, 5.0), (90000 * 3, 8.0)], [5.0, 8.0]),
        # 32-bit wrap
        ([(0xFFFFFF00, 1.0), (0x00000100 + 90000 - 0x200, 2.0)], [1.0, 2.0 - 0x200 / 90000]),
        # a publisher that reconnects starts a new RTP clock: re-anchored at arrival
        ([(500, 1.0), (123456789, 2.0), (123456789 + 9000, 2.1)], [1.0, 2.0, 2.1]),
    ],
)
def test_media_time_follows_rtp_and_keeps_gaps(steps, expected):
    track = _Track(90000)
    got = [track.media_time(ts, arrival) for ts, arrival in steps]
    assert got == pytest.approx(expected, abs=0.01)


def _chain(*drafts: tuple[float, str, dict]) -> list:
    events, prev = [], "0" * 64
    for seq, (ts, type_, data) in enumerate(drafts, 1):
        event = seal_event("s", seq, prev, EventDraft(ts, "system", type_, data))
        events.append(event)
        prev = event.hash
    return events


def test_the_manifest_and_the_restart_gap_come_from_the_ledger_alone():
    segment = {"participant": "p-1", "index": 0, "wall_start": 11.0, "wall_end": 21.0, "bytes": 7}
    events = _chain(
        (1.0, "session.created", {}),
        (10.0, "recording.started", {}),
        (21.5, "recording.segment", segment),
        (22.0, "recording.gap", {"reason": "queue_full", "wall_start": 21.0, "wall_end": 23.0}),
    )
    m = manifest(events)
    assert [s["index"] for s in m["segments"]] == [0] and m["bytes"] == 7
    assert m["runs"][0]["stopped"] is None and m["head"] == events[-1].hash
    assert restart_gap(events, 100.0) == {
        "type": "record_gap",
        "reason": "node_restart",
        "wall_start": 23.0,
        "wall_end": 100.0,
    }
    stopped = events + _chain((1.0, "session.created", {}), (30.0, "recording.stopped", {}))[1:]
    assert restart_gap(stopped, 100.0) is None
