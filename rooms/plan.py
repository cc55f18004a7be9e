"""The media plan: who receives whose audio and video, as a pure function of the state.

The media layer forwards exactly ``plan(state)`` and nothing else, so the confidentiality rules
are properties of this one function (tested over generated states):

- media flows only between connected participants standing in the same room (R9); nobody in the
  waiting room or a staff console sends or receives, except console observers (below);
- observers (policy ``observer_roles``) never publish; from the console they receive the rooms
  the policy lets them observe; a privileged session never has an observer edge (R2);
- the recorder (subscriber id ``"recorder"``) receives only while recording is on, only from the
  recorded rooms, never in a privileged session (R2, R14); with consent-gated recording a
  participant who has not consented is held silent and unseen while it runs (R8), or, when the
  policy says ``late_joiner="pause"``, the recording pauses (no recorder edge) until they do;
- a muted participant's audio goes nowhere.
"""

from __future__ import annotations

from typing import NamedTuple

from rooms.state import CONSOLE, ParticipantState, SessionState, is_media_space

RECORDER = "recorder"
KINDS = ("audio", "video")


class Edge(NamedTuple):
    publisher: str
    subscriber: str
    kind: str  # "audio" | "video"


def _kinds(p: ParticipantState) -> tuple[str, ...]:
    return ("video",) if p.muted else KINDS


def plan(state: SessionState) -> frozenset[Edge]:
    if state.ended or state.policy is None:
        return frozenset()
    policy = state.policy
    present = [
        p
        for p in state.participants.values()
        if p.connected and (is_media_space(p.space) or p.space == CONSOLE)
    ]
    recording = (
        state.recording
        and policy.recording != "forbidden"
        and not policy.privileged
        and not state.recording_paused()
    )

    def held(p: ParticipantState) -> bool:
        return (
            recording
            and policy.recording == "consent_gated"
            and p.space in policy.recorded_spaces
            and not p.consents.get("recording")
        )

    publishers = [
        p
        for p in present
        if is_media_space(p.space) and p.role not in policy.observer_roles and not held(p)
    ]
    edges: set[Edge] = set()
    for pub in publishers:
        for kind in _kinds(pub):
            for sub in present:
                if sub.id != pub.id and sub.space == pub.space:
                    edges.add(Edge(pub.id, sub.id, kind))
                elif (
                    not policy.privileged
                    and sub.space == CONSOLE
                    and sub.role in policy.observer_roles
                    and pub.space in policy.observed_spaces
                ):
                    edges.add(Edge(pub.id, sub.id, kind))
            if recording and pub.space in policy.recorded_spaces:
                edges.add(Edge(pub.id, RECORDER, kind))
    return frozenset(edges)
