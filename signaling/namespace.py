"""The ``/parley`` socket.io namespace: authenticate, validate, hand over, answer.

Thin on purpose: a connection is accepted only with a valid invitation token; every event is
rate-limited, re-checked against the session's records (a link revoked or a participant removed
a moment ago is refused at once) and decoded into a typed message; domain commands go to rooms/
(which checks the permission), SDP goes to media/ through the conductor. Every reply is
``{"ok": true, ...}`` or ``{"ok": false, "error": {"code", "message"}}`` (see docs/protocol.md).
One participant has one live socket: a newer connection replaces the older one.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import socketio

from esign.errors import EsignError
from media.errors import MediaError
from rooms.commands import SERVER_ONLY, decode_command
from rooms.errors import CommandError
from rooms.state import LEFT
from signaling import messages as m
from signaling.bearer import live_participant
from signaling.conductor import media_key
from signaling.otp import OtpError
from signaling.ratelimit import RateLimiter
from signaling.tokens import Invitation, TokenError, TokenSigner

log = logging.getLogger("parley.signaling")

NAMESPACE = "/parley"
RESERVED_EVENTS = frozenset({"connect", "disconnect"})


def _refusal(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """The client's ``connect_error`` gets ``err.message`` and ``err.data = {code, message}``."""
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code, "message": message})


def _error(code: str, message: str) -> dict[str, Any]:
    return m.ErrorReply(code, message).to_dict()


class RecordingAsk(m.Message):
    """The mediator asks everyone present for their recording consent (``ask``) or withdraws
    the question (``cancel``): rooms ``ask_recording``, in the ledger with the asker; each
    answer (``record_consent``) names the question, ``start_recording`` who started it."""

    action: Literal["ask", "cancel"]


_RECORDING_AFFECTS_ASK = frozenset({"start_recording", "stop_recording"})


class _OpenQuestions:
    """The open recording question of a session, from its state (rooms: ``recording.asked``
    until ``recording.ask_cancelled``, a start, a stop or the end)."""

    def __init__(self, service) -> None:
        self._service = service

    def get(self, session_id: str) -> dict[str, Any] | None:
        try:
            return self._service.state(session_id).recording_question()
        except CommandError:
            return None


class ParleyNamespace(socketio.AsyncNamespace):
    def __init__(
        self,
        *,
        signer: TokenSigner,
        service,
        engine,
        conductor,
        slots_for,
        desk=None,
        codes=None,
        invitation_ttl=86400.0,
        recording_available: bool = False,
        turn=None,
        router=None,
    ) -> None:
        super().__init__(NAMESPACE)
        self._signer = signer
        self._service = service
        self._engine = engine
        self._conductor = conductor
        self._slots_for = slots_for  # SessionState -> number of slot pairs a client offers
        self._invitation_ttl = invitation_ttl
        self._limits: dict[str, RateLimiter] = {}
        self._who: dict[str, tuple[str, str, str]] = {}  # sid -> (session, participant, role)
        self._inv: dict[str, Invitation] = {}  # sid -> the invitation it connected with
        self._device: dict[str, str | None] = {}  # sid -> the page's device id (auth.device)
        self._desk = desk
        self._codes = codes
        # Until a recorder runs on this node nobody is asked to consent to a recording that
        # cannot happen, and the page offers no recording controls (welcome ``recording``).
        self._recording_available = recording_available
        # session -> {"id", "by", "at"}: the mediator's open recording question, shown to whoever
        # has not consented (in the welcome too, so a reload or a reconnect still sees it). Read
        # from the session's state (the ledger's recording.asked), so a restart keeps it.
        self._asks = _OpenQuestions(service)
        self._turn = turn  # signaling.turn.TurnCredentials: iceServers for the welcome, or None
        # cluster.routing.Router on a clustered node: a session served by another node answers
        # ``redirect`` (or ``session_moving``) instead of ``session_not_found`` (docs/scaling.md)
        self._router = router

    # -- lifecycle ----------------------------------------------------------------------------
    async def on_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            inv = self._signer.verify(token)
            state = self._service.state(inv.session)
            person = live_participant(state, inv, allow_left=True)
        except TokenError as exc:
            raise _refusal(exc.code, exc.message) from None
        except CommandError as exc:
            if exc.code == "not_found" and self._router is not None:
                await self._elsewhere(inv.session)
            code = "session_not_found" if exc.code == "not_found" else exc.code
            raise _refusal(code, exc.message) from None
        # The same link already live on another device: ask the person first ("use here?"),
        # then the page connects again with ``takeover``. A page without a device id (a bot, an
        # older page) and the same device (a reload, a reconnect) replace the old socket at once.
        device = auth.get("device") if isinstance(auth.get("device"), str) else None
        device = device[:64] if device else None
        live = self._conductor.sid_of(inv.session, inv.participant)
        other = self._device.get(live) if live is not None else None
        new_device = device is not None and other is not None and other != device
        if new_device and auth.get("takeover") is not True:
            raise _refusal("in_use", "this link is in use on another device")
        if person.space == LEFT:  # back through the link after leaving: rooms says where to
            self._system(inv.session, {"type": "connect", "participant": person.id, "rejoin": True})
        self._who[sid] = (inv.session, inv.participant, inv.role)
        self._inv[sid] = inv
        self._device[sid] = device
        self._limits[sid] = RateLimiter()
        replaced = self._conductor.bind(inv.session, inv.participant, sid, inv.gen)
        if replaced is not None:
            await self._replace(replaced, "another_device" if new_device else "another_window")
            if new_device:  # a party waits to be admitted again; a host keeps the place
                await self._conductor.close_peer(inv.session, inv.participant, "replaced")
                self._system(
                    inv.session,
                    {"type": "disconnect", "participant": person.id, "reason": "replaced"},
                )
        await self.emit(
            "welcome",
            {
                "v": m.PROTOCOL_VERSION,
                "participant": inv.participant,
                "role": inv.role,
                "slots": self._slots_for(state),
                "consents": self._consents(state.policy.consents_for(person.role)),
                "recording": self._recording_available,
                "recording_ask": self._asks.get(inv.session) if self._recording_available else None,
                "session": state.view_for(inv.participant),
                "iceServers": self._ice_servers(inv),
                **({"nodes": self._router.others()} if self._router is not None else {}),
            },
            to=sid,
        )
        # A socket still connecting cannot be disconnected (python-socketio ignores it), so a
        # connection that was replaced or revoked while this handler waited refuses itself here,
        # after the last await: nothing runs between this check and the connection's completion.
        refusal = self._still_live(sid)
        if refusal is not None:
            self._forget(sid)
            if refusal[0] == "session_not_found" and self._router is not None:
                await self._elsewhere(inv.session)  # dropped meanwhile: it moved to another node
            raise _refusal(*refusal)
        self._engine.prefetch()  # someone is here: load the media stack before their offer
        log.info(
            "participant connected", extra={"session": inv.session, "participant": inv.participant}
        )

    async def _elsewhere(self, session_id: str) -> None:
        """A session this node does not serve: raise ``redirect`` (the node that does, by the
        registry) or ``session_moving`` (nobody serves it yet: try again); return when the
        cluster does not know it either (``session_not_found``)."""
        try:
            route = await self._router.route(session_id)
        except Exception:  # noqa: BLE001 - Redis away: the page tries again, here
            log.warning("cannot ask the registry where a session is", exc_info=True)
            raise _refusal("session_moving", "this mediation is moving; trying again") from None
        if route is None:
            return
        if route.code == "redirect":
            message = "this mediation is served by another server"
            raise socketio.exceptions.ConnectionRefusedError(
                message, {"code": "redirect", "message": message, "url": route.url}
            )
        raise _refusal("session_moving", "this mediation is moving to another server; trying again")

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        who = self._forget(sid)
        if who is None:
            return
        session_id, pid, _ = who
        if not self._conductor.unbind(session_id, pid, sid):
            return  # a newer connection of the same participant took over, or it was closed
        if self._desk is not None:
            await self._desk.phone_gone(session_id, pid)
        await self._conductor.close_peer(session_id, pid, "socket closed")
        self._system(
            session_id, {"type": "disconnect", "participant": pid, "reason": "transport_lost"}
        )

    async def trigger_event(self, event: Any, *args):
        """Route known events; every other event name gets a clear error, not silence.

        ``connect`` and ``disconnect`` reach the handlers only when the server itself raises
        them (the socket is still connecting, or already disconnecting); a client that sends
        them as events gets ``unknown_event``."""
        sid = args[0] if args else None
        if not isinstance(event, str):
            return _error("invalid_message", "an event name must be a string")
        if event in RESERVED_EVENTS:
            if self._lifecycle(event, sid):
                return await super().trigger_event(event, *args)
            return _error("unknown_event", f"{event!r} is not an event a client may send")
        if sid not in self._who:
            return _error("not_authenticated", "connect with an invitation token first")
        if not self._limits[sid].allow():
            if self._limits[sid].refused > 200:
                await self.disconnect(sid)
            return _error("rate_limited", "too many messages; slow down")
        refusal = self._still_live(sid)
        if refusal is not None:
            if refusal[0] == "replaced":  # normally kicked on replacement; make sure
                self.server.start_background_task(self.disconnect, sid)
            return _error(*refusal)
        handler = getattr(self, f"handle_{event}", None) if event.isidentifier() else None
        if handler is None:
            return _error("unknown_event", f"unknown event {event[:40]!r}")
        if len(args) != 2:
            return _error("invalid_message", "expected exactly one payload object")
        try:
            return await handler(sid, *self._who[sid], args[1])
        except m.BadMessage as exc:
            return _error(exc.code, exc.message)
        except CommandError as exc:
            return _error(exc.code, exc.message)
        except (MediaError, EsignError) as exc:
            return _error(exc.code, exc.message)
        except Exception:  # noqa: BLE001 - one bad event must not take the connection down
            log.exception("event %s failed", event)
            return _error("internal", "the server could not handle this message")
        finally:
            await self._service.durable()  # durable before acknowledged (signaling/durable.py)

    # -- events -------------------------------------------------------------------------------
    async def handle_offer(self, sid, session_id, pid, role, payload):
        offer = m.decode(m.Offer, payload)
        answer = await self._conductor.accept_offer(session_id, pid, offer.sdp)
        refusal = self._still_live(sid)
        if refusal is not None:  # replaced, revoked or removed while ICE was gathering
            await self._conductor.close_peer(session_id, pid, refusal[0])  # the peer just made
            return _error(*refusal)
        try:
            self._system(session_id, {"type": "connect", "participant": pid}, strict=True)
        except CommandError as exc:
            await self._conductor.close_peer(session_id, pid, exc.code)
            raise
        return {
            "ok": True,
            "sdp": answer,
            "slots": self._conductor.slot_map(session_id, pid),
            "weak_network": self._conductor.weak_network(session_id),
        }

    async def handle_candidate(self, sid, session_id, pid, role, payload):
        """Trickle ICE: a candidate the page found after its offer left (the page sends the
        offer at once instead of waiting for its browser to gather). For this participant's
        current connection only: its offer's ufrag must match (``stale_candidate`` otherwise)."""
        msg = m.decode(m.IceCandidate, payload, max_bytes=1024)
        peer = self._engine.peers.get(media_key(session_id, pid))
        if peer is None:
            return _error("no_connection", "no media connection: send the offer first")
        await peer.add_candidate(msg.candidate, msg.mid, msg.ufrag)
        return {"ok": True}

    async def handle_command(self, sid, session_id, pid, role, payload):
        env = m.decode(m.CommandEnvelope, payload, max_bytes=m.MAX_COMMAND_BYTES)
        raw = dict(env.cmd)
        if not isinstance(raw.get("type"), str):
            return _error("invalid_message", "cmd.type must be a command name")
        if raw["type"] in SERVER_ONLY:
            return _error("forbidden", "this command is issued by the server, not by clients")
        if env.cid is not None:
            raw["cid"] = env.cid
        command = decode_command(raw)
        asked = raw["type"] in _RECORDING_AFFECTS_ASK and self._asks.get(session_id) is not None
        events = self._service.execute(session_id, pid, command)
        if asked and self._asks.get(session_id) is None:
            await self._set_ask(session_id, None)  # answered by the start (or the stop)
        return {"ok": True, "seq": events[-1].seq if events else None}

    async def handle_recording(self, sid, session_id, pid, role, payload):
        """The mediator's recording question to everyone present (R8). Who may ask is who may
        start; the asker's own consent comes first, so nobody is asked by someone who refuses."""
        msg = m.decode(RecordingAsk, payload, max_bytes=256)
        if not self._recording_available:
            return _error("unavailable", "no recorder runs on this server")
        state = self._service.state(session_id)
        if not state.policy.allows(role, "ask_recording"):
            return _error("forbidden", "only the mediator asks for recording consent")
        if state.policy.recording != "consent_gated" or state.ended:
            return _error("conflict", "this session does not ask for recording consent")
        if msg.action == "cancel" and state.recording_ask is None:
            return {"ok": True}  # already closed (a start, a stop, another tab withdrew it)
        # rooms checks the rest (recording off, the asker's own consent) and records it
        self._service.execute(
            session_id, pid, decode_command({"type": "ask_recording", "action": msg.action})
        )
        ask = self._asks.get(session_id)
        await self._set_ask(session_id, ask)
        if ask is None:
            return {"ok": True}
        return {"ok": True, "ask": ask, "missing": [p.id for p in state.recording_missing()]}

    async def handle_media(self, sid, session_id, pid, role, payload):
        pref = m.decode(m.MediaPreference, payload, max_bytes=256)
        self._conductor.set_video_paused(
            session_id, pid, pref.video_paused, weak_network=pref.weak_network
        )
        return {"ok": True}

    async def handle_invitation(self, sid, session_id, pid, role, payload):
        req = m.decode(m.InvitationRequest, payload, max_bytes=256)
        state = self._service.state(session_id)
        if not state.policy.allows(role, "reissue_invitation"):
            return _error("forbidden", "only the host may hand out invitation links")
        person = state.participants.get(req.participant)
        if person is None:
            return _error("not_found", "no such participant in this session")
        token = self._signer.issue(
            session_id, person.id, person.role, ttl=self._invitation_ttl, gen=person.invitation_gen
        )
        return {"ok": True, "path": f"/j/{token}"}

    async def handle_agreement(self, sid, session_id, pid, role, payload):
        msg = m.decode(m.AgreementAction, payload, max_bytes=120 * 1024)
        if self._desk is None:
            return _error("unavailable", "e-signature is not configured on this server")
        if msg.action == "draft":
            raw = {"case_type": msg.case_type, "language": msg.language, "terms": msg.terms}
            return await self._desk.draft(session_id, pid, raw)
        if msg.action == "freeze":
            return await self._desk.freeze(session_id, pid)
        return await self._desk.seal(session_id, pid)

    async def handle_esign(self, sid, session_id, pid, role, payload):
        msg = m.decode(m.EsignAction, payload, max_bytes=16 * 1024)
        if self._desk is None:
            return _error("unavailable", "e-signature is not configured on this server")
        body = {"request": msg.request, "reply": msg.reply, "reason": msg.reason}
        return await self._desk.esign(session_id, pid, self._inv[sid], msg.action, body)

    async def handle_otp(self, sid, session_id, pid, role, payload):
        msg = m.decode(m.OtpAction, payload, max_bytes=1024)
        if self._codes is None or not self._codes.available:
            return _error("unavailable", "one-time codes are not configured on this server")
        try:
            if msg.action == "send":
                if msg.participant is None or msg.email is None:
                    return _error("invalid_message", "send needs participant and email")
                # rooms decides who may check identities (a dry run of the host's own command)
                self._service.check(
                    session_id,
                    pid,
                    decode_command(
                        {"type": "mark_identity_checked", "participant": msg.participant}
                    ),
                )
                state = self._service.state(session_id)
                person = state.participants[msg.participant]
                await self._codes.send(session_id, person.id, person.name, msg.email, state.title)
                target = self._conductor.sid_of(session_id, person.id)
                if target is not None:
                    await self.emit("otp_sent", {"v": m.PROTOCOL_VERSION}, to=target)
                return {"ok": True}
            if msg.code is None:
                return _error("invalid_message", "verify needs the 6-digit code")
            self._codes.verify(session_id, pid, msg.code)
        except OtpError as exc:
            return _error(exc.code, exc.message)
        self._system(
            session_id,
            {"type": "mark_identity_checked", "participant": pid, "method": "one_time_code"},
        )
        return {"ok": True}

    async def handle_leave(self, sid, session_id, pid, role, payload):
        m.decode(m.Leave, payload, max_bytes=512)
        self._conductor.unbind(session_id, pid, sid)
        self._who.pop(sid, None)
        await self._conductor.close_peer(session_id, pid, "left")
        self._system(session_id, {"type": "leave", "participant": pid})
        return {"ok": True}

    # -- helpers ------------------------------------------------------------------------------
    def _lifecycle(self, event: str, sid: Any) -> bool:
        """Is the server raising ``connect``/``disconnect`` (not a client sending it)? Client
        events are only dispatched for fully connected sockets."""
        manager = self.server.manager
        if event == "connect":
            return manager.is_pre_connected(sid, self.namespace)
        return not manager.is_connected(sid, self.namespace)

    def _ice_servers(self, inv: Invitation) -> list[dict]:
        """TURN credentials for this participant, expiring with the invitation or sooner
        (signaling/turn.py); never logged."""
        if self._turn is None or not self._turn.enabled:
            return []
        return self._turn.ice_servers(inv.participant, not_after=inv.exp)

    def _consents(self, consents: dict[str, list[str]]) -> dict[str, list[str]]:
        """The arrival screen asks only what admission needs: recording consent is asked in the
        call, when the mediator asks or on entering a room being recorded (``handle_recording``,
        the page's question), never up front for a recording that may never happen."""
        return {**consents, "optional": [t for t in consents["optional"] if t != "recording"]}

    async def _set_ask(self, session_id: str, ask: dict[str, Any] | None) -> None:
        """Tell every live page of the session its recording question (None: closed)."""
        for sid, who in list(self._who.items()):
            if who[0] == session_id:
                await self.emit("recording_ask", {"v": m.PROTOCOL_VERSION, "ask": ask}, to=sid)

    def _still_live(self, sid: str) -> tuple[str, str] | None:
        """(code, message) when this socket may no longer act: the session's records no longer
        admit its invitation, or a newer socket of the same participant replaced it."""
        who, inv = self._who.get(sid), self._inv.get(sid)
        if who is None or inv is None:
            return ("not_authenticated", "connect with an invitation token first")
        try:
            live_participant(self._service.state(who[0]), inv)
        except TokenError as exc:
            return (exc.code, exc.message)
        except CommandError:
            return ("session_not_found", "this session no longer exists")
        if self._conductor.sid_of(who[0], who[1]) != sid:
            return ("replaced", "you joined from another window")
        return None

    async def _replace(self, old_sid: str, where: str = "another_window") -> None:
        """Tell the older socket of a participant why it goes (``where``: another_window or
        another_device), and close it."""
        message = {
            "another_window": "you joined from another window",
            "another_device": "you continued on another device",
        }[where]
        await self.emit(
            "error", {"code": "replaced", "message": message, "where": where}, to=old_sid
        )
        await self.disconnect(old_sid)

    def _forget(self, sid: str) -> tuple[str, str, str] | None:
        self._limits.pop(sid, None)
        self._inv.pop(sid, None)
        self._device.pop(sid, None)
        return self._who.pop(sid, None)

    def _system(self, session_id: str, raw: dict, *, strict: bool = False) -> None:
        """Record what the system saw happen (media up, connection lost) as a command."""
        try:
            self._service.execute(session_id, "system", decode_command(raw))
        except CommandError as exc:
            if strict and exc.code != "conflict":
                raise
            log.info("system command %s not applied: %s", raw.get("type"), exc.code)
