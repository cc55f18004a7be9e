"""Parley's composition root and command line.

``create_app(config)`` builds the aiohttp application with everything wired (ledger store,
session service, media engine, socket.io namespace); ``python server.py <command>`` runs it.
Configuration comes from flags, then ``PARLEY_*`` environment variables, then embedded defaults
(no Redis, SQLite in the data directory) so that ``python server.py serve`` works on a laptop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from desk.codes import CodeStore, MemoryCodeStore, derive_key
from desk.store import DeskStore
from media.engine import MediaConfig, MediaEngine
from recording.cli import add_recordings_parser, recordings_command, retention_days
from recording.keys import MasterKey
from recording.manifest import record_downtime
from recording.recorder import Recorder
from rooms.accounts import AccountError, Accounts, AccountStore
from rooms.errors import CommandError
from rooms.ledger import SqliteLedgerStore
from rooms.service import ParticipantSpec, SessionService
from signaling import desk_public, desk_ring, renewal, staff, visits_clock
from signaling.agreements import AgreementDesk, agreement_routes, load_or_create_passphrase
from signaling.conductor import Conductor
from signaling.console import Console
from signaling.desk import ConsultDesk
from signaling.desk_console import DeskConsole
from signaling.desk_documents import DeskDocuments
from signaling.desk_metrics import DeskMetrics
from signaling.desk_notify import ContactNotifier, SmsSpool
from signaling.documents import Documents
from signaling.durable import durable_answers
from signaling.guard import (
    ConnectionGuard,
    body_deadline,
    quiet_client_errors,
    quiet_logger,
    runner_options,
)
from signaling.headers import connect_sources, forwarded, parse_proxies, security_headers
from signaling.http import METRICS_REGISTRY, routes
from signaling.messages import StrictJson
from signaling.namespace import NAMESPACE, ParleyNamespace
from signaling.otp import OneTimeCodes, SmtpNotifier
from signaling.review import Review, ReviewMetrics, purge_forever
from signaling.tls import ensure_self_signed, lan_addresses, server_context
from signaling.tokens import TokenSigner, load_or_create_secret
from signaling.turn import TurnCredentials, parse_urls
from signaling.visits_console import VisitsConsole
from signaling.visits_family import FamilyPages
from signaling.visits_home import visits_home
from signaling.visits_legal_aid import LegalAidPages
from visits.booking import load_rules
from visits.cli import add_user_parsers, add_visits_parser, visits_command
from visits.cli import user_command as visits_user_command
from visits.model import VisitError
from visits.store import VisitStore

log = logging.getLogger("parley")


@dataclasses.dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8443
    data_dir: Path = Path("data")
    tls: str = "off"  # "off" | "self-signed" | "files"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url: str | None = None  # base of join links, e.g. https://mediation.example.org
    secret: str | None = None  # token secret (hex); generated into the data directory if unset
    ice_host_addresses: list[str] | None = None
    max_slots: int = 7
    organisation: str = "Parley 调解中心 Mediation Centre"  # printed on agreements and the seal
    esign_passphrase: str | None = None  # encrypts the e-signature keys; generated if unset
    timezone: str = "Asia/Shanghai"  # the date printed on agreements
    smtp_host: str | None = None  # one-time identity codes by e-mail; unset: not offered
    smtp_port: int = 587
    smtp_from: str = "parley@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    invitation_ttl: float = 24 * 3600
    desk_ring_seconds: float = 60.0  # docs/desk.md: the mediator's fallback link after this
    demo: bool = True
    log_format: str = "json"  # "json" | "text"
    log_level: str = "INFO"
    event_loop: str = "uvloop"  # "uvloop" | "asyncio" (docs/media.md: why uvloop)
    trusted_proxies: list[str] | None = None  # X-Forwarded-* believed from these (docs/security.md)
    metrics_token: str | None = None  # /metrics needs "Bearer <token>"; unset: loopback only
    # signaling/turn.py: time-limited TURN credentials handed to each participant in the welcome
    # (coturn's static-auth-secret; URLs comma-separated, e.g. turn:h:3478?transport=udp,...)
    turn_secret: str | None = None
    turn_urls: list[str] | None = None
    turn_ttl: float = 12 * 3600
    # docs/recording.md: the master key (64 hex digits; unset: a key file in the data directory),
    # the segment length, and how many frames may wait for the writer before frames are dropped
    recording_key: str | None = None
    recording_segment_seconds: float = 10.0
    recording_queue_frames: int = 10000
    # docs/recording.md, "Retention": days a recording is kept after its session ended, per
    # kind ("forever" or empty: never purged)
    retention_days_mediation: str = "365"
    retention_days_visitation: str = "180"
    retention_days_consultation: str = "365"
    # docs/scaling.md: the ledger on Redis Streams (redis://host:port/db); unset: SQLite. With
    # it the node joins the cluster: heartbeats, session leases (ttl), takeover of dead nodes'
    redis_url: str | None = None
    node_id: str | None = None  # unset: <hostname>-<port>
    lease_ttl_ms: int = 2000
    # docs/scaling.md, "Drain": on SIGTERM a clustered node waits this long for its sessions
    # to end before it hands the rest to another node (a second SIGTERM: at once)
    drain_seconds: float = 20.0
    # docs/scaling.md, "Workers": node processes behind one public port ("auto": one per core);
    # 1 is the single process of the embedded default. A worker advertises ``node_url`` (its
    # own port) in its heartbeat, where pages are redirected; ``public_url`` stays the front's
    workers: str = "1"
    node_url: str | None = None
    # the live-visits clock (bookings become sessions, signaling/visits_live.py) on this process;
    # off on every worker but the first (two clocks on one visits database would both open a
    # booking's session)
    live_visits: bool = True
    # on the other workers: the URL of the one that runs it, where the live visits' pages are
    # sent (signaling/visits_home.py)
    visits_url: str | None = None
    # other origins the pages may open their socket on (Content-Security-Policy connect-src):
    # the other workers of this machine, where a terminal follows a visit one of them took over
    connect_origins: list[str] | None = None

    ENV_PREFIX = "PARLEY_"

    @classmethod
    def from_sources(cls, args: argparse.Namespace | None = None, env=os.environ) -> Config:
        cfg = cls()
        for field in dataclasses.fields(cls):
            raw = env.get(cls.ENV_PREFIX + field.name.upper())
            if args is not None and getattr(args, field.name, None) is not None:
                raw = getattr(args, field.name)
            if raw is None:
                continue
            setattr(cfg, field.name, _coerce(field.name, raw))
        return cfg


def _coerce(name: str, raw):
    if not isinstance(raw, str):
        return raw
    if name in ("port", "max_slots", "smtp_port", "recording_queue_frames", "lease_ttl_ms"):
        return int(raw)
    if name in (
        "invitation_ttl",
        "recording_segment_seconds",
        "desk_ring_seconds",
        "drain_seconds",
    ):
        return float(raw)
    if name == "turn_ttl":
        return float(raw)
    if name in ("data_dir", "tls_cert", "tls_key"):
        return Path(raw)
    if name in ("demo", "smtp_starttls", "live_visits"):
        return raw.lower() not in ("0", "false", "no", "off")
    if name in ("ice_host_addresses", "trusted_proxies", "turn_urls", "connect_origins"):
        return [a.strip() for a in raw.split(",") if a.strip()]
    return raw


# -- the application ----------------------------------------------------------------------------

SERVICE = web.AppKey("service", SessionService)
DESK = web.AppKey("desk", AgreementDesk)
ENGINE = web.AppKey("engine", MediaEngine)
SIGNER = web.AppKey("signer", TokenSigner)
SIO = web.AppKey("sio", socketio.AsyncServer)
CONFIG = web.AppKey("config", Config)
CONSULT = web.AppKey("consult", ConsultDesk)
CLUSTER = web.AppKey("cluster", object)  # cluster.node.ClusterNode, or None without Redis


def slots_for(config: Config):
    def slots(state) -> int:
        return max(1, min(config.max_slots, state.policy.max_participants - 1))

    return slots


def create_app(config: Config) -> web.Application:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    secret = (
        bytes.fromhex(config.secret)
        if config.secret
        else load_or_create_secret(config.data_dir / "secret.key")
    )
    signer = TokenSigner(secret)
    store = _ledger_store(config)
    # PARLEY_TEST_CLOCK=1: tests move the session clock (docs/visitation.md); refused in production
    test_clock = visits_clock.from_env(os.environ, config)
    service = SessionService(store, clock=test_clock or time.time)
    # clustered, a node rebuilds only the sessions it holds (cluster/node.py, at start)
    recovered = 0 if config.redis_url else service.recover()
    log.info("sessions recovered from the ledger", extra={"count": recovered})

    quiet_client_errors()
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        cors_allowed_origins=[],  # same origin only
        max_http_buffer_size=64 * 1024,
        ping_interval=5,
        ping_timeout=10,
        logger=quiet_logger("parley.socketio"),
        engineio_logger=quiet_logger("parley.engineio"),
        json=StrictJson,  # NaN/Infinity are not JSON: refused with a code, not read as null
    )

    async def emit(event, data, sid):
        await sio.emit(event, data, to=sid, namespace=NAMESPACE)

    passphrase = (
        config.esign_passphrase.encode()
        if config.esign_passphrase
        else load_or_create_passphrase(config.data_dir / "esign-passphrase")
    )
    notifier = _notifier(config)
    # one-time codes and their windows: memory, or Redis when clustered (docs/scaling.md,
    # "Codes on Redis"); HMAC keys from the secret, so a code made on one node verifies on any
    code_store = open_code_store(config, secret)
    codes = OneTimeCodes(notifier, store=code_store, key=derive_key(secret, "otp"))
    desk = AgreementDesk(
        service,
        config.data_dir,
        organisation=config.organisation,
        passphrase=passphrase,
        base_url=config.public_url or f"http://{config.host}:{config.port}",
        timezone=config.timezone,
        notifier=notifier,  # the sealed PDF and its check code go to each party (an anchor)
        contact=codes.contact,
    )
    # The engine reports to the conductor, which needs the engine: the callbacks look the
    # conductor up when they run, after it exists.
    engine = MediaEngine(
        MediaConfig(ice_host_addresses=config.ice_host_addresses, max_slots=config.max_slots),
        on_slots=lambda pid, slots: conductor.on_slots(pid, slots),
        on_hint=lambda pid, hint: conductor.on_hint(pid, hint),
        on_peer_state=lambda pid, st: log.info("peer %s", st, extra={"participant": pid}),
    )

    async def kick(sid):
        await sio.disconnect(sid, namespace=NAMESPACE)

    master_key = MasterKey.load(config.data_dir, given=config.recording_key)  # recorder, review
    recorder = Recorder(
        config.data_dir / "recordings",
        master_key,
        report=lambda session, raw: conductor.recorder_report(session, raw),
        request_keyframe=lambda publisher: engine.request_keyframe(publisher),
        segment_seconds=config.recording_segment_seconds,
        max_frames=config.recording_queue_frames,
    )
    _record_restart_gaps(service)
    conductor = Conductor(service, engine, emit, kick, recorder=recorder)
    cluster = _cluster_node(config, store, service, engine, conductor, kick)
    sio.register_namespace(
        ParleyNamespace(
            signer=signer,
            service=service,
            engine=engine,
            conductor=conductor,
            slots_for=slots_for(config),
            desk=desk,
            codes=codes,
            invitation_ttl=config.invitation_ttl,
            recording_available=True,  # the recorder above runs on this node (docs/recording.md)
            turn=TurnCredentials(
                config.turn_secret, parse_urls(config.turn_urls), max_ttl=config.turn_ttl
            ),
            router=cluster.router if cluster is not None else None,  # docs/scaling.md, redirect
        )
    )

    app = web.Application(
        client_max_size=1024 * 1024, middlewares=[body_deadline, durable_answers(service)]
    )
    app[CONFIG], app[SERVICE], app[ENGINE], app[SIGNER], app[SIO] = (
        config,
        service,
        engine,
        signer,
        sio,
    )
    app[DESK] = desk
    app[CLUSTER] = cluster  # serve() drains it on SIGTERM before the app shuts down

    async def close_sockets(app):
        """On shutdown (after the listening socket closed): close every socket.io connection
        (its disconnect handlers run now, while the ledger is open; the client is sent engine.io's
        CLOSE) without waiting for the client's side: aiohttp's grace (signaling/guard.py
        ``SHUTDOWN_GRACE_S``) then ends what the clients leave open. Engine.io's own
        disconnect-all waits for every client's queue and hung on half-open ones."""
        for socket in list(sio.eio.sockets.values()):
            await socket.close(wait=False)

    app.on_shutdown.append(close_sockets)
    registry = CollectorRegistry()
    registry.register(_Metrics(service, engine))
    app[METRICS_REGISTRY] = registry
    sio.attach(app)
    ConnectionGuard(sio, NAMESPACE).install()

    def ready():
        # the recorder too (docs/recording.md, "Health"): no visit goes live without it (R1)
        checks = {"ledger": _store_ok(store), "media": engine_started[0]}
        recorder_health = recorder.health()
        ok = all(checks.values()) and recorder_health["ok"]
        return ok, checks | {"recorder": recorder_health}

    engine_started = [False]

    async def runtime_ctx(app):
        """Media engine and system clock up; on the way down, the ledger is closed last."""
        await engine.start()
        recorder.start()
        if cluster is not None:
            await cluster.start()
        engine_started[0] = True
        clock = asyncio.get_running_loop().create_task(conductor.run_clock())
        archive_job = asyncio.get_running_loop().create_task(
            renewal.run_forever(service, config.data_dir, lambda: _existing_pki(desk, config))
        )
        purge_job = asyncio.get_running_loop().create_task(
            purge_forever(service, config.data_dir / "recordings", retention_days(config))
        )
        yield
        for task in (clock, archive_job, purge_job):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await recorder.aclose()  # open segments are written and recorded before the ledger closes
        await conductor.drain()
        engine_started[0] = False
        await engine.close()
        await conductor.drain()
        if cluster is not None:
            await cluster.stop()  # leases expire and live nodes take the sessions over
            await cluster.registry.close()
        store.close()

    accounts = open_accounts(config)
    app[staff.ACCOUNTS] = accounts

    async def accounts_ctx(app):
        yield
        accounts.close()

    visits = open_visit_store(config)  # docs/visitation.md
    visits_console = VisitsConsole(
        visits,
        rules=load_rules(config.data_dir / "visits-rules.json"),
        # notices to the family's phone (SMS spool) or e-mail (SMTP), as for the family page
        notifier=ContactNotifier(SmsSpool(config.data_dir / "sms-outbox"), notifier),
        timezone=config.timezone,
        service=service,  # the live visit: bookings become sessions (signaling/visits_live.py)
        signer=signer,
    )
    visits_console.officer.attach_media(engine, conductor)  # the officer's grid pictures
    if visits_console.live is not None:  # the lawyer's statement is sealed by the desk's PKI (R2)
        visits_console.live.statements.pki = desk.pki
    if cluster is not None:  # a visit another node took over: read from the ledger, commanded
        visits_console.officer.relay = cluster.relay  # there (docs/scaling.md, cluster/relay.py)
        if visits_console.live is not None:
            visits_console.live.relay = cluster.relay
            # one clock for the cluster: every node's bookings are one database
            visits_console.live.role = lambda: cluster.registry.hold("visits-clock")

    async def visits_ctx(app):
        loop = asyncio.get_running_loop()
        jobs = []
        if config.live_visits:
            jobs.append(loop.create_task(visits_console.live.run()))
        if config.redis_url:  # the cluster's visits log: snapshot and trim (cluster/visits.py)
            from cluster.visits import compact_forever

            jobs.append(loop.create_task(compact_forever(visits)))
        yield
        for job in jobs:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        visits.close()

    app.cleanup_ctx.append(runtime_ctx)
    app.cleanup_ctx.append(accounts_ctx)
    app.cleanup_ctx.append(visits_ctx)
    # the duty-lawyer consultation desk (docs/desk.md): codes and summaries to the citizen's
    # phone through the SMS spool (an SMS gateway reads it), e-mail addresses through SMTP
    desk_store = open_desk_store(config)
    consult = ConsultDesk(
        desk_store,
        service,
        signer,
        notifier=ContactNotifier(SmsSpool(config.data_dir / "sms-outbox"), notifier),
        timezone=config.timezone,
        invitation_ttl=config.invitation_ttl,
        ring_seconds=config.desk_ring_seconds,
        code_store=code_store,
        secret=secret,
    )
    app[CONSULT] = consult
    if cluster is not None:  # a consultation another node serves: read from the ledger and
        consult.relay = cluster.relay  # commanded there (docs/scaling.md, "The desk on Redis")

    async def desk_ctx(app):
        yield
        desk_store.close()

    app.cleanup_ctx.append(desk_ctx)
    app.add_routes(desk_public.routes(consult))
    app.add_routes(DeskConsole(consult, config).routes())
    # the citizen's attached files (docs/desk.md)
    documents = DeskDocuments(consult, config.data_dir / "desk-documents")
    if cluster is not None:  # a file received by another node: fetched from it (docs/scaling.md)
        from cluster.peer_files import PeerFiles

        documents.peers = PeerFiles(cluster.registry, derive_key(secret, "peer-files"))

        async def close_peers(app):
            await documents.peers.close()

        app.on_cleanup.append(close_peers)
    app.add_routes(documents.routes())
    app.add_routes(desk_ring.routes(consult))  # the mediator's panel while the desk rings
    registry.register(DeskMetrics(consult))  # the hall's figures on /metrics
    registry.register(ReviewMetrics(service))  # R3: overdue and due reviews
    app.middlewares.append(forwarded(parse_proxies(config.trusted_proxies)))
    if config.visits_url and not config.live_visits:
        app.middlewares.append(visits_home(config.visits_url))
    app.on_response_prepare.append(
        security_headers(hsts=config.tls != "self-signed", connect=config.connect_origins or ())
    )
    app.add_routes(routes(signer, ready, metrics_token=config.metrics_token))
    app.add_routes(staff.routes())
    # clustered, the console spans the nodes (docs/scaling.md, "The console across nodes")
    app.add_routes(Console(service, signer, config, desk=desk, cluster=cluster).routes())
    app.add_routes(visits_console.routes())
    if test_clock is not None:
        app.add_routes(visits_clock.ClockRoute(test_clock, service, visits_console).routes())
    # relatives' legal-aid requests at the bureau's counter, to the duty-lawyer desk
    app.add_routes(LegalAidPages(visits_console, consult, config.public_url).routes())
    # the relatives' own page (/family): one-time codes and notices through the same notifier
    family = FamilyPages(
        visits_console, visits_console.notifier, code_store=code_store, secret=secret
    )
    app.add_routes(family.routes())

    async def close_codes(app):
        code_store.close()

    app.on_cleanup.append(close_codes)
    app.add_routes(
        Review(
            service,
            config.data_dir / "recordings",
            master_key,
            visits_console.directory.grants,
            retention=retention_days(config),
        ).routes()
    )
    app.add_routes(Documents(service, signer, config.data_dir / "documents").routes())
    app.add_routes(agreement_routes(desk, signer, service))
    return app


def _record_restart_gaps(service: SessionService) -> None:
    """After a restart, each session whose recording was on records what the downtime lost; its
    recording resumes by itself when its participants reconnect (the plan still says so)."""
    for state in service.sessions():
        try:
            record_downtime(service, state.id, time.time())
        except CommandError as exc:
            log.warning("restart gap not recorded for %s: %s", state.id, exc.code)


def _notifier(config: Config) -> SmtpNotifier | None:
    if not config.smtp_host:
        return None
    return SmtpNotifier(
        host=config.smtp_host,
        port=config.smtp_port,
        sender=config.smtp_from,
        username=config.smtp_user,
        password=config.smtp_password,
        starttls=config.smtp_starttls,
    )


def _ledger_store(config: Config):
    """SQLite in the data directory (group commit), or Redis Streams with ``redis_url``
    (imported only then: the embedded default needs no Redis)."""
    if config.redis_url:
        from cluster.ledger import RedisLedgerStore

        return RedisLedgerStore.from_url(config.redis_url, sync="group")
    return SqliteLedgerStore(config.data_dir / "ledger.sqlite3", sync="group")


def _cluster_node(config: Config, store, service, engine, conductor, kick):
    """With ``redis_url``: this node's place in the cluster (docs/scaling.md); else None."""
    if not config.redis_url:
        return None
    from cluster.node import ClusterNode, close_sessions_sockets, node_id_for, server_load
    from cluster.registry import LeaseSettings, Registry

    ttl = max(int(config.lease_ttl_ms), 200)
    registry = Registry.from_url(
        config.redis_url,
        node_id_for(config.node_id, config.port),
        config.node_url or config.public_url or f"http://{config.host}:{config.port}",
        settings=LeaseSettings(ttl_ms=ttl, interval=ttl / 4000),
    )
    return ClusterNode(
        service,
        registry,
        load=server_load(service, engine),
        on_lost=close_sessions_sockets(conductor, kick),
        store=store,
        place_new=True,  # the console's new sessions go to the least-loaded node (Placement)
    )


def _store_ok(store) -> bool:
    try:
        store.session_ids()
        return True
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        return False


class _Metrics:
    """Prometheus collector reading live counters at scrape time."""

    def __init__(self, service, engine) -> None:
        self._service, self._engine = service, engine

    def collect(self):
        sessions = self._service.sessions()
        g = GaugeMetricFamily("parley_sessions", "Sessions held by this node", labels=["state"])
        g.add_metric(["live"], sum(1 for s in sessions if not s.ended))
        g.add_metric(["ended"], sum(1 for s in sessions if s.ended))
        yield g
        for key, value in sorted(self._engine.stats().items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield GaugeMetricFamily(f"parley_media_{key}", f"media engine: {key}", value=value)


# -- demo session ------------------------------------------------------------------------------

DEMO_CASE = "DEMO-0001"
DEMO_USER = "demo"


def demo_account(app: web.Application) -> tuple[str | None, str | None]:
    """The demo mediator's staff account: (username, password). A fresh server (no accounts at
    all) gets one, with a random password returned once to be printed; one that has it already
    gets (username, None); a server with other accounts and no demo account gets (None, None)."""
    accounts = app[staff.ACCOUNTS]
    existing = accounts.list()
    if any(a.username == DEMO_USER for a in existing):
        return DEMO_USER, None
    if existing:
        return None, None
    import secrets

    password = secrets.token_urlsafe(12)
    accounts.add(DEMO_USER, "王调解员 Mediator Wang", ["mediator"], password)
    return DEMO_USER, password


def demo_links(
    app: web.Application, base_url: str, owner: str | None = None
) -> list[tuple[str, str, str]]:
    """Create (or reuse) the demo mediation session, owned by the staff account ``owner`` when
    given (so that it is in that mediator's console); return (label, role, url) per participant."""
    service, signer, config = app[SERVICE], app[SIGNER], app[CONFIG]
    actor = f"staff:{owner}" if owner else "system"
    state = next(
        (
            s
            for s in service.sessions()
            if s.case_number == DEMO_CASE and not s.ended and s.created_by == actor
        ),
        None,
    )
    if state is None:
        state = service.create_session(
            "mediation",
            actor=actor,
            title="演示调解 Demo mediation",
            case_number=DEMO_CASE,
            participants=[
                ParticipantSpec(name="王调解员 Mediator Wang", role="mediator"),
                ParticipantSpec(name="张三 Zhang San", role="party", side="A"),
                ParticipantSpec(name="李四 Li Si", role="party", side="B"),
            ],
        )
    links = []
    for p in state.participants.values():
        token = signer.issue(
            state.id, p.id, p.role, ttl=config.invitation_ttl, gen=p.invitation_gen
        )
        links.append((p.name, p.role, f"{base_url}/j/{token}"))
    return links


def _demo_login_text(base: str, owner: str | None, password: str | None) -> str:
    """How the demo mediator signs: the agreement's e-signature needs a logged-in staff member,
    which the mediator link above is not. Lines start unindented (they are not links)."""
    steps = (
        f"log in at {base}/login, open {DEMO_CASE} in the console and press "
        "'Enter the session / 进入调解室' (the mediator link above works for everything but signing)."
    )
    if owner and password:
        return (
            "To sign the agreement as the mediator, use the demo staff account "
            "(password shown this once; note it down):\n"
            f"{base}/login   username: {owner}   password: {password}\nThen {steps}\n"
        )
    if owner:
        return (
            f"To sign the agreement as the mediator: as staff account '{owner}' (its password was "
            f"printed when it was created), {steps}\n"
        )
    return (
        "To sign the agreement as the mediator, the case needs a staff owner: create an account "
        "(python server.py user add NAME --name ... --role mediator), log in at "
        f"{base}/login and create a case in the console.\n"
    )


def _print_qr(url: str) -> None:
    import qrcode

    qr = qrcode.QRCode(border=1)
    qr.add_data(url)
    qr.print_ascii(tty=False, invert=True)


async def serve(config: Config) -> None:
    ssl_ctx = None
    if config.tls == "self-signed":
        cert, key = ensure_self_signed(config.data_dir, lan_addresses())
        ssl_ctx = server_context(cert, key)
    elif config.tls == "files":
        if not (config.tls_cert and config.tls_key):
            raise SystemExit("--tls files needs --tls-cert and --tls-key")
        ssl_ctx = server_context(config.tls_cert, config.tls_key)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, **runner_options())
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_ctx)
    await site.start()
    host, port = site._server.sockets[0].getsockname()[:2]
    scheme = "https" if ssl_ctx else "http"
    shown_host = host
    if host in ("0.0.0.0", "::"):
        shown_host = (lan_addresses() or ["127.0.0.1"])[0]
    base = config.public_url or f"{scheme}://{shown_host}:{port}"
    running = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop | asyncio
    # the log line first: whoever waits for LISTENING then finds it already written
    log.info("listening", extra={"url": base, "event_loop": running})
    print(f"LISTENING {host}:{port}", flush=True)
    if config.demo:
        owner, password = await asyncio.to_thread(demo_account, app)
        print(
            f"\nParley is running at {base}\nDemo mediation session — open one link per person:\n"
        )
        for name, role, url in demo_links(app, base, owner):
            print(f"  {role:<9} {name}\n  {url}\n")
            if sys.stdout.isatty():
                _print_qr(url)
        print(_demo_login_text(base, owner, password))
        print("The mediator admits the parties from the waiting room.\n", flush=True)
    stop, hurry = asyncio.Event(), asyncio.Event()  # the first signal, a second one

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    cluster = app[CLUSTER]
    if cluster is not None:  # docs/scaling.md, "Drain": serving on while the sessions end
        await cluster.retire(max(config.drain_seconds, 0.0), hurry)
    await runner.cleanup()


# -- logging -----------------------------------------------------------------------------------

_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STD_ATTRS})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler], force=True)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)


# -- command line ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="server.py", description="Parley video server")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--data-dir", dest="data_dir")
    s.add_argument("--tls", choices=["off", "self-signed", "files"])
    s.add_argument("--tls-cert", dest="tls_cert")
    s.add_argument("--tls-key", dest="tls_key")
    s.add_argument("--public-url", dest="public_url")
    s.add_argument("--ice-host", dest="ice_host_addresses", help="comma-separated addresses")
    s.add_argument("--no-demo", dest="demo", action="store_const", const=False)
    s.add_argument("--log-format", dest="log_format", choices=["json", "text"])
    s.add_argument("--event-loop", dest="event_loop", choices=EVENT_LOOPS)
    s.add_argument("--redis", dest="redis_url", help="ledger on Redis Streams (docs/scaling.md)")
    s.add_argument(
        "--workers",
        help="node processes behind the one port: N or auto (one per core); default 1"
        " (docs/scaling.md, Workers)",
    )

    led = sub.add_parser("ledger", help="ledger tools")
    led_sub = led.add_subparsers(dest="ledger_command", required=True)
    lv = led_sub.add_parser("verify", help="check a session's hash chain")
    lv.add_argument("session")
    lv.add_argument("--data-dir", dest="data_dir")
    lv.add_argument("--redis", dest="redis_url", help="read the ledger from this Redis")
    lm = led_sub.add_parser(
        "migrate",
        help="copy the data directory's ledger.sqlite3 into the cluster's Redis (server"
        " stopped; docs/scaling.md, Moving to a cluster)",
    )
    lm.add_argument("--data-dir", dest="data_dir")
    lm.add_argument("--redis", dest="redis_url", help="the cluster's Redis")
    lm.add_argument("--owner", help="node id that serves the sessions not ended (<id>-w0 ...)")

    dk = sub.add_parser("desk", help="duty-lawyer desk tools")
    dk_sub = dk.add_subparsers(dest="desk_command", required=True)
    dm = dk_sub.add_parser(
        "migrate",
        help="copy the data directory's desk.sqlite3 into the cluster's Redis (server stopped;"
        " docs/scaling.md, The desk on Redis)",
    )
    dm.add_argument("--data-dir", dest="data_dir")
    dm.add_argument("--redis", dest="redis_url", help="the cluster's Redis")

    u = sub.add_parser("user", help="staff accounts")
    u_sub = u.add_subparsers(dest="user_command", required=True)
    ua = u_sub.add_parser("add", help="add a staff account (password asked, or --password-stdin)")
    ua.add_argument("username")
    ua.add_argument("--name", required=True, help="display name, e.g. 王调解员")
    ua.add_argument(
        "--role",
        action="append",
        required=True,
        dest="roles",
        help="admin, mediator, duty_lawyer, operator, officer, supervisor, reviewer",
    )
    ua.add_argument("--password-stdin", action="store_true")
    ua.add_argument("--data-dir", dest="data_dir")
    ul = u_sub.add_parser("list", help="list staff accounts")
    ul.add_argument("--data-dir", dest="data_dir")
    for accounts_parser in (ua, ul):
        accounts_parser.add_argument(
            "--redis", dest="redis_url", help="a cluster's accounts (docs/scaling.md)"
        )
    add_user_parsers(u_sub)  # user grant NAME --role officer --site prison-a
    add_visits_parser(sub)  # visits import --kind inmates FILE [--dry-run]
    add_recordings_parser(sub)  # recordings purge [--now ISO]

    v = sub.add_parser(
        "verify", help="verify a signed agreement, evidence bundle or visit statement offline"
    )
    v.add_argument("args", nargs=argparse.REMAINDER)

    es = sub.add_parser("esign", help="e-signature tools")
    es_sub = es.add_subparsers(dest="esign_command", required=True)
    er = es_sub.add_parser("renew", help="add due archive timestamps now (server stopped)")
    er.add_argument("--data-dir", dest="data_dir")
    return p


def _existing_pki(desk, config: Config):
    """The desk's PKI, but only once one exists: never create keys just to renew nothing."""
    return desk.pki() if (config.data_dir / "esign-pki").exists() else None


def esign_renew_command(config: Config) -> int:
    """One pass of the archive timestamp job over the ledger (see signaling/renewal.py)."""
    from esign.pki import LocalPki

    if not (config.data_dir / "esign-pki").exists():
        print("no e-signature PKI in this data directory: nothing to renew")
        return 0
    passphrase = (
        config.esign_passphrase.encode()
        if config.esign_passphrase
        else load_or_create_passphrase(config.data_dir / "esign-passphrase")
    )
    base_url = (config.public_url or f"http://{config.host}:{config.port}") + "/esign"
    pki = LocalPki.open(config.data_dir, passphrase, config.organisation, base_url)
    store = SqliteLedgerStore(config.data_dir / "ledger.sqlite3")
    try:
        service = SessionService(store)
        service.recover(mark_disconnected=False)
        outcomes = asyncio.run(renewal.renew_sealed(service, config.data_dir, pki))
    finally:
        store.close()
    for outcome in outcomes:
        print(outcome.session_id, outcome.result, outcome.detail)
    return 1 if any(o.result == "failed" for o in outcomes) else 0


def open_accounts(config: Config) -> Accounts:
    """The staff accounts: the data directory's file; on Redis when clustered (docs/scaling.md,
    "Accounts on Redis"), the file still looked up for accounts Redis does not have."""
    local = AccountStore(config.data_dir / "accounts.sqlite3")
    if not config.redis_url:
        return local
    from cluster.accounts import RedisAccountStore

    return RedisAccountStore.from_url(config.redis_url, local=local)


def open_code_store(config: Config, secret: bytes) -> CodeStore:
    """Where one-time codes and their windows are kept: this process's memory; on Redis when
    clustered (docs/scaling.md, "Codes on Redis"), its own connection as the accounts'."""
    if not config.redis_url:
        return MemoryCodeStore()
    from cluster.codes import RedisCodeStore

    return RedisCodeStore.from_url(config.redis_url, key=derive_key(secret, "redis-keys"))


def open_desk_store(config: Config) -> DeskStore:
    """The duty-lawyer desk's records: the data directory's file; on Redis when clustered
    (docs/scaling.md, "The desk on Redis"), so every node serves one queue per hall. The Redis
    store has the file store's methods (``DeskStore`` is the interface)."""
    if not config.redis_url:
        return DeskStore(config.data_dir)
    from cluster.desk import RedisDeskStore
    from cluster.desk_migrate import left_behind

    store = RedisDeskStore.from_url(config.redis_url)
    left_behind(config.data_dir / "desk.sqlite3", store)
    return store


def open_visit_store(config: Config) -> VisitStore:
    """The visits database: the data directory's file; when clustered, this machine's copy of
    the cluster's (docs/scaling.md, "The visits database on Redis"), the same interface. A copy
    that followed a log Redis no longer has stops the server: an operator decides."""
    if not config.redis_url:
        return VisitStore(config.data_dir)
    from cluster.visits import RedisVisitStore, ReplicaLost
    from cluster.visits_migrate import left_behind

    store = RedisVisitStore.from_url(config.data_dir, config.redis_url)
    try:
        store.catch_up()
        left_behind(config.data_dir / "visits.sqlite3", store)
    except ReplicaLost as exc:
        store.close()
        raise SystemExit(f"unavailable: {exc.message}; see docs/scaling.md") from None
    except VisitError as exc:  # Redis away: the pages read the copy, writes wait for it
        log.warning("visits database: %s", exc.message)
    return store


def cli_command(config: Config, run: Callable[[], int]) -> int:
    """A command-line tool's exit code, with a Redis that does not answer or a malformed
    ``--redis`` said in one line (exit 2), never a traceback."""
    unavailable: tuple[type[Exception], ...] = ()
    if config.redis_url:
        import redis

        unavailable = (redis.ConnectionError, redis.TimeoutError)
    try:
        return run()
    except unavailable as exc:
        print(f"unavailable: Redis at {config.redis_url} does not answer ({exc})", file=sys.stderr)
        return 2
    except ValueError as exc:  # a malformed --redis URL
        if not config.redis_url:
            raise
        print(f"invalid: --redis {config.redis_url!r}: {exc}", file=sys.stderr)
        return 2


def _user_command(args: argparse.Namespace, config: Config) -> int:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_accounts(config)
    if args.user_command in ("grant", "revoke", "grants"):
        try:
            return visits_user_command(args, open_visit_store(config), store)
        finally:
            store.close()
    try:
        if args.user_command == "list":
            for account in store.list():
                print(account.username, account.display_name, ",".join(sorted(account.roles)))
            return 0
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            import getpass

            password = getpass.getpass("Password: ")
            if getpass.getpass("Again: ") != password:
                print("passwords differ", file=sys.stderr)
                return 2
        try:
            account = store.add(args.username, args.name, args.roles, password)
        except AccountError as exc:
            print(f"{exc.code}: {exc.message}", file=sys.stderr)
            return 2
        print(f"added {account.username} ({', '.join(sorted(account.roles))})")
        return 0
    finally:
        store.close()


EVENT_LOOPS = ("uvloop", "asyncio")


def parse_workers(raw) -> int | None:
    """``--workers``: a whole number >= 1, or ``auto`` (the machine's cores); None when bad."""
    text = str(raw).strip().lower()
    if text == "auto":
        return os.cpu_count() or 1
    if not (text.isascii() and text.isdigit()) or len(text) > 4 or int(text) < 1:
        return None
    return int(text)


def run_event_loop(main_coroutine, event_loop: str):
    """Run the server on uvloop (the default: every packet wakes the loop, and uvloop's wakeups
    cost less CPU than asyncio's) or on asyncio's own loop."""
    if event_loop == "uvloop":
        import uvloop

        return uvloop.run(main_coroutine)
    return asyncio.run(main_coroutine)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        from esign.verify import main as verify_main

        if args.args and args.args[0].endswith(".json"):  # a privileged visit's statement (R2)
            from visits.privilege import main as statement_main

            return statement_main(args.args)
        return verify_main(args.args)
    config = Config.from_sources(args)
    setup_logging(config)
    if args.command == "user":
        return cli_command(config, lambda: _user_command(args, config))
    if args.command == "visits" and args.visits_command == "migrate":
        from cluster.visits_migrate import run as migrate_visits

        return migrate_visits(config.data_dir, config.redis_url)
    if args.command == "visits":
        return cli_command(config, lambda: visits_command(args, open_visit_store(config)))
    if args.command == "esign":
        return esign_renew_command(config)
    if args.command == "recordings":
        return recordings_command(args, config)
    if args.command == "desk":
        from cluster.desk_migrate import run as migrate_desk

        return migrate_desk(config.data_dir, config.redis_url)
    if args.command == "ledger" and args.ledger_command == "migrate":
        from cluster.migrate import run as migrate_ledger

        return migrate_ledger(config.data_dir, config.redis_url, args.owner)
    if args.command == "ledger":
        from rooms.ledger import report_chain, verify_main

        if config.redis_url:
            from cluster.ledger import RedisLedgerStore

            store = RedisLedgerStore.from_url(config.redis_url)
            try:
                return report_chain(args.session, store.read(args.session), "Redis")
            finally:
                store.close()
        return verify_main(config.data_dir / "ledger.sqlite3", args.session)
    if config.tls == "self-signed" and config.host == "127.0.0.1" and args.host is None:
        config.host = "0.0.0.0"  # self-signed TLS exists so that phones on the LAN can join
    if config.event_loop not in EVENT_LOOPS:
        print(f"bad_config: event_loop must be one of {', '.join(EVENT_LOOPS)}", file=sys.stderr)
        return 2
    try:
        retention_days(config)  # bad_config: retention_days_*
        parse_proxies(config.trusted_proxies)
        connect_sources(config.connect_origins or ())  # bad_config: connect_origins
        TurnCredentials(config.turn_secret, parse_urls(config.turn_urls))  # bad_config: turn_*
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    workers = parse_workers(config.workers)
    if workers is None:
        print(
            f"bad_config: --workers must be a whole number >= 1 or auto, not {config.workers!r}",
            file=sys.stderr,
        )
        return 2
    if workers > 1:  # docs/scaling.md, "Workers": a supervisor, a front, N nodes on one Redis
        from cluster.workers import supervise

        return supervise(config, workers)
    started = time.monotonic()
    try:
        run_event_loop(serve(config), config.event_loop)
    except KeyboardInterrupt:
        pass
    log.info("stopped", extra={"uptime_s": round(time.monotonic() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
