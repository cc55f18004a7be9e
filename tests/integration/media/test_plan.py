"""Slot assignment follows the plan: stable, reused when freed, reported only on change.

Real PeerSessions (offers from bots, answers made), no media needed: the plan logic is
synchronous and does not wait for connections.
"""

from __future__ import annotations

from bench.bot import Bot
from tests.integration.media.conftest import E, mesh


async def peers(room, names, slots=2):
    bots = []
    for name in names:
        bot = Bot(name, slots=slots)
        bots.append(bot)
        room.bots[name] = bot
        await room.engine.accept_offer(name, await bot.create_offer())
    return bots


def who(room, pid):
    return [s["participant"] for s in room.engine.slot_map(pid)]


async def test_freed_slot_is_reused_and_others_keep_theirs(room):
    await peers(room, ["a", "b", "c", "d"], slots=2)
    room.engine.apply_plan(mesh(["a", "b", "c"]))
    assert who(room, "a") == ["b", "c"]
    room.engine.apply_plan(mesh(["a", "c"]) + [E("d", "a", "audio")])  # b leaves, d joins a's view
    assert who(room, "a") == ["d", "c"]  # c did not move; d took the freed slot
    room.engine.apply_plan(mesh(["a", "c"]) + [E("d", "a", "audio"), E("b", "a", "video")])
    assert who(room, "a") == ["d", "c"]  # no slot left for b
    assert room.engine.stats()["edges_without_slot"] >= 1


async def test_flags_say_what_is_forwarded_now_per_kind(room):
    await peers(room, ["a", "b"], slots=1)
    room.engine.apply_plan([E("b", "a", "audio")])
    (entry,) = room.engine.slot_map("a")
    assert entry["participant"] == "b" and entry["audio"] and not entry["video"]
    assert (entry["audio_mid"], entry["video_mid"]) == ("2", "3")
    room.engine.apply_plan([E("b", "a", "audio"), E("b", "a", "video")])
    assert room.engine.slot_map("a")[0]["video"]
    room.engine.apply_plan([])
    assert room.engine.slot_map("a")[0] == {
        "slot": 0,
        "audio_mid": "2",
        "video_mid": "3",
        "participant": None,
        "audio": False,
        "video": False,
    }


async def test_on_slots_is_called_only_for_subscribers_whose_map_changed(room):
    await peers(room, ["a", "b", "c"], slots=2)
    room.engine.apply_plan(mesh(["a", "b", "c"]))
    room.slot_events.clear()
    room.engine.apply_plan(mesh(["a", "b", "c"]))  # same plan: nothing to say
    assert room.slot_events == []
    room.engine.apply_plan(
        [e for e in mesh(["a", "b", "c"]) if e.subscriber != "c" or e.publisher != "a"]
    )
    assert [pid for pid, _ in room.slot_events] == ["c"]


async def test_a_publisher_that_reconnects_finds_its_slot_waiting(room):
    await peers(room, ["a", "b", "c"], slots=2)
    room.engine.apply_plan(mesh(["a", "b", "c"]))
    slot_of_b = who(room, "a").index("b")
    await room.engine.close_peer("b", "network lost")
    assert who(room, "a")[slot_of_b] == "b"  # still in the plan: reserved, nothing flows
    assert room.engine.slot_map("a")[slot_of_b]["video"] is False
    await peers(room, ["b"], slots=2)
    assert who(room, "a")[slot_of_b] == "b"
    assert room.engine.slot_map("a")[slot_of_b]["video"] is True


async def test_self_edges_and_unknown_participants_are_harmless(room):
    await peers(room, ["a"], slots=1)
    room.engine.apply_plan(
        [E("a", "a", "video"), E("ghost", "a", "video"), E("a", "ghost", "audio")]
    )
    assert who(room, "a") == ["ghost"]  # reserved for a participant who has not connected yet
    assert room.engine.slot_map("a")[0]["video"] is False
    assert room.engine.slot_map("ghost") == []


async def test_a_bad_edge_changes_nothing(room):
    import pytest

    await peers(room, ["a", "b"], slots=1)
    room.engine.apply_plan(mesh(["a", "b"]))
    before = room.engine.slot_map("a")
    with pytest.raises(ValueError):
        room.engine.apply_plan([E("b", "a", "screen")])
    assert room.engine.slot_map("a") == before
