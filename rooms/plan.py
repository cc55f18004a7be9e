"""The media plan: who receives whose audio and video, as a pure function of the state.

The media layer forwards exactly ``plan(state)`` and nothing else, so the confidentiality rules
are properties of this one function (tested over generated states):

- media flows only between connected participants standing in the same room (R9); nobody in the
  waiting room or a staff console sends or receives, except console observers (below);
- observers (policy ``observer_roles``) never publish; from the console they receive the rooms
  the policy lets them observe; a privileged session never has an observer edge, and nobody
  but its parties (no staff, no unknown role, whatever space they were put in) has any edge (R2);
- the recorder (subscriber id ``"recorder"``) receives only while recording is on, only from the
  recorded rooms, never in a privileged session (R2, R14); with consent-gated recording a
  participant who has not consented is held silent and unseen while it runs (R8), or, when the
  policy says ``late_joiner="pause"``, the recording pauses (no recorder edge) until they do;
- a muted participant's audio goes nowhere;
- an officer's grid of live sessions (signaling/visits_officer.py) gets ``thumbnails()``: the
  video an observer of the session would receive, as keyframes only (an edge property media
  honours without knowing why); never of a privileged session (R2).
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


class Thumbnail(NamedTuple):
    """A video edge forwarded as keyframes only, about one per ``keyframe_interval`` seconds."""

    publisher: str
    subscriber: str
    kind: str  # always "video"
    keyframe_interval: float


def _kinds(p: ParticipantState) -> tuple[str, ...]:
    return ("video",) if p.muted else KINDS


def _recording(state: SessionState) -> bool:
    policy = state.policy
    return (
        state.recording
        and policy.recording != "forbidden"
        and not policy.privileged
        and not state.recording_paused()
    )


def _present(state: SessionState) -> list[ParticipantState]:
    policy = state.policy
    # R2, even for a state no rule would make: in a privileged session only the parties (its
    # roles that are not staff: the lawyer, the inmate) send or receive, wherever anyone stands
    parties = policy.roles - policy.staff_roles if policy.privileged else None
    return [
        p
        for p in state.participants.values()
        if p.connected
        and (is_media_space(p.space) or p.space == CONSOLE)
        and (parties is None or p.role in parties)
    ]


def _publishers(state: SessionState, present: list[ParticipantState]) -> list[ParticipantState]:
    policy, recording = state.policy, _recording(state)

    def held(p: ParticipantState) -> bool:
        return (
            recording
            and policy.recording == "consent_gated"
            and p.space in policy.recorded_spaces
            and not p.consents.get("recording")
        )

    return [
        p
        for p in present
        if is_media_space(p.space) and p.role not in policy.observer_roles and not held(p)
    ]


def thumbnails(state: SessionState, subscriber: str, interval: float) -> frozenset[Thumbnail]:
    """Keyframes-only video to ``subscriber`` (not a participant: an officer's grid) of every
    publisher an observer at the console would see; none in a privileged session (R2)."""
    policy = state.policy
    if state.ended or policy is None or policy.privileged or not policy.observer_roles:
        return frozenset()
    return frozenset(
        Thumbnail(p.id, subscriber, "video", interval)
        for p in _publishers(state, _present(state))
        if p.space in policy.observed_spaces
    )


def plan(state: SessionState) -> frozenset[Edge]:
    if state.ended or state.policy is None:
        return frozenset()
    policy = state.policy
    present = _present(state)
    recording = _recording(state)
    publishers = _publishers(state, present)
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
