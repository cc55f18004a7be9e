"""What the desk's routes share: typed JSON bodies (msgspec; unknown fields, wrong types and
oversize values refused before any handler runs) and errors as ``{ok: false, error: {code,
message}}`` with a status that fits the code."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web

from desk.errors import DeskError
from desk.queue import TOPICS
from rooms.errors import CommandError
from signaling.guard import refusal

MAX_BODY = 16 * 1024
STATUS = {
    "invalid": 400,
    "consent_required": 400,
    "no_code": 400,
    "wrong_code": 400,
    "forbidden": 403,
    "csrf": 403,
    "not_on_shift": 403,
    "not_your_point": 403,
    "not_found": 404,
    "conflict": 409,
    "closed": 409,
    "busy": 409,
    "caller_away": 409,
    "ended": 409,
    "too_many_documents": 409,
    "too_large": 413,
    "unsupported_type": 415,
    "locked": 429,
    "throttled": 429,
    "unavailable": 503,
    "session_moving": 503,  # clustered: the consultation's node is changing; try again
}

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=80, pattern=r"\S")]
Phone = Annotated[str, msgspec.Meta(min_length=5, max_length=32)]
Code = Annotated[str, msgspec.Meta(pattern=r"^\d{6}$")]
Topic = Literal[TOPICS]  # type: ignore[valid-type]
Lang = Literal["zh", "en"]
# an interpreter on request: '' none; sign language, Tibetan, Uyghur, Mongolian, English, other
INTERPRETER_LANGUAGES = ("sign", "bo", "ug", "mn", "en", "other")
Interpreter = Literal[("",) + INTERPRETER_LANGUAGES]  # type: ignore[valid-type]


class _Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


Body = _Body  # the base of the desk's other typed bodies (signaling/desk_ring.py)


class CodeRequest(_Body):
    phone: Phone


class JoinRequest(_Body):
    name: Name
    phone: Phone
    code: Code
    topic: Topic
    consent_online: bool
    consent_recording: bool = False
    lang: Lang = "zh"
    interpreter: Interpreter = ""


class CallbackRequest(JoinRequest):
    at: Annotated[str, msgspec.Meta(max_length=32)] = ""


class RatingRequest(_Body):
    stars: Annotated[int, msgspec.Meta(ge=1, le=5)]
    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""


class StatusRequest(_Body):
    status: Literal["available", "away"]


TicketId = Annotated[int, msgspec.Meta(ge=1, le=2**53)]


class PickupRequest(_Body):
    ticket: TicketId | None = None


class EndRequest(_Body):
    ticket: TicketId
    summary: Annotated[str, msgspec.Meta(min_length=1, max_length=4000, pattern=r"\S")]
    referral: bool = False
    referral_note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class TransferRequest(_Body):
    ticket: TicketId
    to: Annotated[str, msgspec.Meta(max_length=64)]  # a colleague's username; "" takes it back


class LegalAidRequest(_Body):
    ticket: TicketId
    summary: Annotated[str, msgspec.Meta(min_length=1, max_length=4000, pattern=r"\S")]


class CallBackRequest(_Body):
    ticket: TicketId


class HistoryRequest(_Body):
    ticket: TicketId


class InterpreterRequest(_Body):
    ticket: TicketId


def fail(code: str, message: str) -> web.Response:
    return refusal(code, message, STATUS.get(code, 400))


async def body(request: web.Request, kind: type):
    """The request's JSON body as ``kind``; DeskError("invalid") when it is not one."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise DeskError("invalid", "the request is too large")
    if request.content_type != "application/json":
        raise DeskError("invalid", "send application/json")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise DeskError("invalid", "the request is too large")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise DeskError("invalid", str(exc)[:200]) from None
    except msgspec.DecodeError:
        raise DeskError("invalid", "the body is not JSON") from None


def answers(handler):
    """Turn DeskError, and a refusal of the consultation's session (rooms', or the cluster
    relay's ``session_moving`` / ``unavailable``), into its JSON answer."""

    async def wrapped(*args) -> web.StreamResponse:  # a function or a method
        try:
            return await handler(*args)
        except (DeskError, CommandError) as exc:
            return fail(exc.code, exc.message)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"
