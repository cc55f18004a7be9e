"""Commands to a session another node serves (docs/scaling.md, "Commands and views across
nodes"; docs/decisions.md, decision 18: no socket.io message crosses nodes, so a command does).

``execute(session, actor, raw)`` runs the command here when this node holds the session; else it
is sent to the lease owner's queue ``<prefix>commands:<node>`` (RPUSH) with a reply key the
sender waits on (BLPOP, at most ``timeout``). Each node reads its own queue (``start``/``stop``
with the ClusterNode), decodes the command and executes it through its own
``SessionService.execute``: rooms' permission rules and the ledger apply exactly as for a command
made there, and the answer is ``ok`` or the refusal's code and message, raised again on the
sender as the same ``CommandError``.

A session nobody serves has ended: what rooms allows after an end (the desk's summary, a
rating) goes to the node that served it while it is alive (it still holds the case), else is
appended here onto the ledger's tail (``SessionService.execute_ended``).

No owner while the session is listed (it is moving between nodes), an owner whose heartbeat is late, or no answer
within ``timeout``: ``session_moving`` or ``unavailable``, never a silent drop. A message is
executed at most once: one still queued at the sender's deadline is taken back (LREM) and one the
owner takes after it is refused there (``unavailable``), so "unavailable" means "not done" except
when the owner took it in the last moment (then the ledger says what happened). A malformed
message is answered (when its reply key is usable) and skipped; the loop keeps serving. Every
node of a cluster trusts the others (they share the Redis and the secret): the actor is the
sender's, checked by rooms on the owner as it would be on the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time

import redis.asyncio as aioredis

from cluster.index import SESSION_ID
from cluster.registry import Registry, stopped
from rooms.commands import decode_command
from rooms.errors import CODES, CommandError

log = logging.getLogger("parley.cluster")

TIMEOUT = 5.0  # seconds a sender waits for the owner's answer
MAX_MESSAGE = 16 * 1024  # bytes of one queued command (a command is a few hundred)
POLL = 1.0  # seconds of one BLPOP on this node's queue (how soon ``stop`` is seen)
MOVING = "session_moving"
UNAVAILABLE = "unavailable"


class RelayError(CommandError):
    """A command not run because of where the session is, not what rooms decided: the
    ``CommandError`` codes of a cluster (``session_moving``: try again in a moment,
    ``unavailable``: its node did not answer). Caught wherever a CommandError is."""

    def __init__(self, code: str, message: str) -> None:
        if code not in (MOVING, UNAVAILABLE):
            raise ValueError(f"unknown relay error code {code!r}")
        Exception.__init__(self, f"{code}: {message}")
        self.code, self.message = code, message


class CommandRelay:
    def __init__(
        self, service, registry: Registry, *, index=None, timeout: float = TIMEOUT
    ) -> None:
        self.service = service
        self.registry = registry
        self.index = index  # cluster/index.py: which node served an ended session
        self.redis: aioredis.Redis = registry.redis
        self.timeout = timeout
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.served = 0  # commands executed here for another node
        self.refused = 0  # messages answered without executing: malformed, late, not served here

    def queue(self, node_id: str) -> str:
        return f"{self.registry.prefix}commands:{node_id}"

    def _reply_prefix(self) -> str:
        return f"{self.registry.prefix}reply:"

    # -- sending -----------------------------------------------------------------------------
    def here(self, session_id: str) -> bool:
        try:
            self.service.state(session_id)
        except CommandError:
            return False
        return True

    async def execute(self, session_id: str, actor: str, raw: dict) -> int:
        """Run ``raw`` (a command as JSON) as ``actor`` on the session wherever it is served;
        returns the number of events it appended. Raises CommandError (rooms' refusal, from
        whichever node, or ``session_moving`` / ``unavailable`` / ``not_found``)."""
        if self.here(session_id):
            return self._local(session_id, actor, raw)
        if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
            raise CommandError("not_found", f"no session {str(session_id)[:40]!r}")
        owner = await self.registry.owner(session_id)
        if owner is None:
            if await self.registry.listed(session_id):
                raise RelayError(MOVING, "the session is moving to another node; try again")
            return await self._after_end(session_id, actor, raw)
        if owner == self.registry.node_id:  # adopted a moment ago, being rebuilt here
            raise RelayError(MOVING, "the session is being taken over here; try again")
        if not await self._alive(owner):
            raise RelayError(MOVING, "the session's node stopped answering; try again")
        return await self._send(owner, session_id, actor, raw)

    async def _after_end(self, session_id: str, actor: str, raw: dict) -> int:
        """A session nobody serves has ended (or never existed: ``not_found``). What rooms
        allows after an end (a desk's summary, a rating, a review) goes to the node that
        served it while that node is alive, which still holds the case in memory; else (it
        restarted, or stopped) it is appended here onto the ledger's tail
        (``SessionService.execute_ended``). A node that did not answer in time is not
        bypassed: the command may have run there (``unavailable``)."""
        if not self.service.peek(session_id).ended:
            raise CommandError("ended", "this session is served nowhere: it has ended")
        entry = await self.index.get(session_id) if self.index is not None else None
        node = entry.node if entry is not None else None
        if node not in (None, self.registry.node_id) and await self._alive(node):
            try:
                return await self._send(node, session_id, actor, raw)
            except RelayError as exc:
                if exc.code != MOVING:  # "not served on this node now": it no longer holds it
                    raise
        events = self.service.execute_ended(session_id, actor, decode_command(raw))
        await self.service.durable()
        return len(events)

    async def _alive(self, node: str) -> bool:
        return await self.registry.node(node) is not None and await self.registry.fresh(node)

    async def _send(self, owner: str, session_id: str, actor: str, raw: dict) -> int:
        reply = self._reply_prefix() + secrets.token_hex(12)
        deadline = time.time() + self.timeout
        message = json.dumps(
            {
                "session": session_id,
                "actor": actor,
                "command": raw,
                "reply": reply,
                "deadline": deadline,
            },
            separators=(",", ":"),
        )
        if len(message.encode()) > MAX_MESSAGE:
            raise CommandError("invalid", f"a command of at most {MAX_MESSAGE} bytes")
        queue = self.queue(owner)
        await self.redis.rpush(queue, message)
        got = await self.redis.blpop([reply], timeout=self.timeout)
        if got is None:
            taken_back = await self.redis.lrem(queue, 1, message)
            why = "not taken" if taken_back else "taken, no answer"
            raise RelayError(
                UNAVAILABLE, f"the session's node did not answer within {self.timeout:g} s ({why})"
            )
        try:
            answer = json.loads(got[1])
        except ValueError:
            raise RelayError(UNAVAILABLE, "the session's node answered garbage") from None
        if not isinstance(answer, dict):
            raise RelayError(UNAVAILABLE, "the session's node answered garbage")
        if answer.get("ok") is True:
            return int(answer.get("events", 0))
        code, text = answer.get("code"), answer.get("message")
        if not isinstance(code, str) or not isinstance(text, str):
            raise RelayError(UNAVAILABLE, "the session's node answered garbage")
        if code in CODES:
            raise CommandError(code, text[:400])
        if code in (MOVING, UNAVAILABLE):
            raise RelayError(code, text[:400])
        raise RelayError(UNAVAILABLE, "the session's node answered an unknown code")

    def _local(self, session_id: str, actor: str, raw: dict) -> int:
        return len(self.service.execute(session_id, actor, decode_command(raw)))

    # -- serving -----------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                self._task.cancel()  # a BLPOP in flight: nothing half-done to lose
                await self._task
            self._task = None

    async def _run(self) -> None:
        queue = self.queue(self.registry.node_id)
        while not self._stop.is_set():
            try:
                got = await self.redis.blpop([queue], timeout=POLL)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("command relay: Redis unreachable (%s)", exc)
                if await stopped(self._stop, POLL):
                    return
                continue
            if got is None:
                continue
            try:
                await self.answer(got[1])
            except (aioredis.RedisError, OSError) as exc:
                log.warning("command relay: answer not sent (%s)", exc)
            except Exception:  # noqa: BLE001 - the relay must keep serving
                log.exception("command relay: message failed")

    async def answer(self, data: bytes) -> None:
        """Decode one queued message, execute it here, send the answer to its reply key."""
        reply, ran = self._reply_key(data), False
        try:
            message = self._decode(data)
            if time.time() > message["deadline"]:
                raise RelayError(UNAVAILABLE, "the command arrived after its sender gave up")
            if not self.here(message["session"]):
                raise RelayError(MOVING, "the session is not served on this node now")
            ran = True  # rooms decides from here: its refusal is an answer, not a bad message
            events = self._local(message["session"], message["actor"], message["command"])
            await self.service.durable()  # answered once stored, as a local answer is
            self.served += 1
            outcome = {"ok": True, "events": events}
        except CommandError as exc:
            if not ran:
                self.refused += 1
            outcome = {"ok": False, "code": exc.code, "message": exc.message}
        if reply is None:
            log.warning("command relay: message without a usable reply key dropped")
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(reply, json.dumps(outcome, separators=(",", ":")))
            pipe.expire(reply, max(int(self.timeout) + 5, 10))
            await pipe.execute()

    def _reply_key(self, data: bytes) -> str | None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            reply = json.loads(data).get("reply")
            prefix = self._reply_prefix()
            if (
                isinstance(reply, str)
                and reply.startswith(prefix)
                and 0 < len(reply) - len(prefix) <= 64
                and reply[len(prefix) :].isalnum()
            ):
                return reply
        return None

    @staticmethod
    def _decode(data: bytes) -> dict:
        if len(data) > MAX_MESSAGE:
            raise CommandError("invalid", f"a message of at most {MAX_MESSAGE} bytes")
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise CommandError("invalid", "the message is not JSON") from None
        if not isinstance(message, dict):
            raise CommandError("invalid", "the message is not a JSON object")
        session, actor = message.get("session"), message.get("actor")
        deadline = message.get("deadline")
        if not isinstance(session, str) or not SESSION_ID.fullmatch(session):
            raise CommandError("invalid", "session: a session id")
        if not isinstance(actor, str) or not 0 < len(actor) <= 80:
            raise CommandError("invalid", "actor: 1 to 80 characters")
        if not isinstance(message.get("command"), dict):
            raise CommandError("invalid", "command: a JSON object")
        if type(deadline) not in (int, float) or not math.isfinite(deadline):
            raise CommandError("invalid", "deadline: a time")
        return message
