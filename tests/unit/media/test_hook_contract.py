"""The hook contract cannot drift: every foreign private name media/ uses is in
`passthrough.HOOKS`, breaking any hook makes the start-up check name it, and the server refuses to
start when the check cannot run."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import re
from pathlib import Path

import pytest
from aiohttp import web

import media
from media import passthrough

MEDIA = Path(media.__file__).parent
NAMED_ACCESS = {"getattr", "setattr", "hasattr", "delattr"}

# Parley's own attributes that media/ sets on an object other than `self` (another Parley
# object). Any other attribute stored on a non-`self` object is taken to be a foreign hook.
OWN_SET_ELSEWHERE = {
    "waiting_keyframe",
    "queued",
    "output",
    "buffer",
    "on_nack",
    "on_rtt",
    "on_keyframe_wanted",
}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def defined_by(base: type, name: str) -> bool:
    """Does a foreign class define `name` (as a class attribute or in its methods' source)?"""
    if hasattr(base, name):
        return True
    try:
        return f"self.{name}" in inspect.getsource(base)
    except (OSError, TypeError):
        return False


def foreign_uses() -> list[tuple[str, str]]:
    """(file:line, name) of each use in media/*.py of a name that is not Parley's own:

    * a private attribute of anything but `self`, or an attribute stored on anything but `self`;
    * a private name given as a string to getattr/setattr/hasattr/delattr;
    * a private name that a media/ class reads, sets or overrides on `self` when a foreign base
      class (aiortc's JitterBuffer, MediaStreamTrack, ...) defines it.
    """
    uses = []
    for path in sorted(MEDIA.glob("*.py")):
        tree = ast.parse(path.read_text())
        module = importlib.import_module(f"media.{path.stem}")
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Attribute):
                on_self = isinstance(node.value, ast.Name) and node.value.id == "self"
                stored = isinstance(node.ctx, ast.Store)
                if not on_self and (is_private(node.attr) or stored):
                    if node.attr not in OWN_SET_ELSEWHERE:
                        uses.append((where, node.attr))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in NAMED_ACCESS
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and is_private(node.args[1].value)
            ):
                uses.append((where, node.args[1].value))
            elif isinstance(node, ast.ClassDef):
                cls = getattr(module, node.name)
                bases = [b for b in cls.__mro__[1:] if not b.__module__.startswith("media")]
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name):
                        name = inner.attr if inner.value.id == "self" else None
                    elif isinstance(inner, ast.FunctionDef):
                        name = inner.name
                    else:
                        continue
                    if name and is_private(name) and any(defined_by(b, name) for b in bases):
                        uses.append((f"{path.name}:{inner.lineno}", name))
    return uses


def test_every_foreign_private_name_used_in_media_is_in_the_contract():
    uses = foreign_uses()
    names = {name for _, name in uses}
    # the scan sees what the issue listed, so an empty or blind scan cannot pass
    assert {"_rtp_router", "_asyncio_future_blocking", "CONSENT_INTERVAL", "_packets"} <= names
    assert "_remove_frame" in names  # an override of aiortc's JitterBuffer method
    listed = {name for _, name, _ in passthrough.HOOKS}
    missing = sorted(f"{where} {name}" for where, name in uses if name not in listed)
    assert not missing, f"not in passthrough.HOOKS: {missing}"


def test_parleys_own_names_are_not_mistaken_for_hooks():
    names = {name for _, name in foreign_uses()}
    assert not names & {"_seq", "_history", "_max_wait", "_stalled_since", "_held", "_real"}
    sources = "".join(p.read_text() for p in MEDIA.glob("*.py"))
    for name in OWN_SET_ELSEWHERE:  # really Parley's: some media/ class sets it on itself
        assert f"self.{name} = " in sources or f"self.{name}: " in sources, name


def test_source_hooks_are_read_by_a_source_contract_entry():
    needles = " ".join(n for _, _, ns in passthrough._SOURCE_CONTRACT for n in ns)
    for _, name, kind in passthrough.HOOKS:
        if kind == "source":
            assert f".{name}" in needles, name


def break_hook(monkeypatch, owner: str, name: str, kind: str) -> None:
    """Make `name` disappear from `owner` the way an aiortc upgrade would."""
    target = passthrough._resolve(owner)
    if kind == "instance":
        init = target.__init__

        def init_without(self, *args, **kwargs):
            init(self, *args, **kwargs)
            delattr(self, name)

        monkeypatch.setattr(target, "__init__", init_without)
    elif kind == "source":  # the function that sets it no longer does

        def rewritten(*args):
            return None

        for _, get, needles in passthrough._SOURCE_CONTRACT:
            if any(f".{name}" in n for n in needles):
                function = get()
                holder = importlib.import_module(function.__module__)
                for part in function.__qualname__.split(".")[:-1]:
                    holder = getattr(holder, part)
                monkeypatch.setattr(holder, function.__name__, rewritten)
    elif isinstance(target, type) and target.__module__ in ("_asyncio", "asyncio.futures"):
        module, _, cls = owner.partition(":")  # a C type: replace it by one without the name
        monkeypatch.setattr(importlib.import_module(module), cls, type(cls, (), {}))
    else:
        monkeypatch.delattr(target, name)


@pytest.mark.parametrize(
    ("owner", "name", "kind"), passthrough.HOOKS, ids=[f"{o}.{n}" for o, n, _ in passthrough.HOOKS]
)
def test_breaking_any_hook_makes_the_start_up_check_name_it(monkeypatch, owner, name, kind):
    passthrough.check_aiortc()  # intact: passes
    break_hook(monkeypatch, owner, name, kind)
    with pytest.raises(passthrough.AiortcIncompatible, match=re.escape(name)) as raised:
        passthrough.check_aiortc()
    assert passthrough.aiortc.__version__ in str(raised.value)


def test_unreadable_aiortc_source_refuses_to_start(monkeypatch):
    """aiortc installed without its .py files: the source checks cannot run, so no start."""

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(passthrough.inspect, "getsource", no_source)
    with pytest.raises(passthrough.AiortcIncompatible, match="cannot read the source"):
        passthrough.check_aiortc()


def test_a_check_that_crashes_refuses_to_start(monkeypatch):
    def broken():
        raise TypeError("RTCRtpReceiver() takes new arguments")

    monkeypatch.setattr(passthrough, "_probe_instances", broken)
    with pytest.raises(passthrough.AiortcIncompatible, match="cannot check.*new arguments"):
        passthrough.check_aiortc()


async def test_the_server_refuses_to_start_when_the_check_cannot_run(monkeypatch, tmp_path):
    from server import Config, create_app

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(passthrough.inspect, "getsource", no_source)
    app = create_app(Config(data_dir=tmp_path / "data", demo=False, log_format="text"))
    runner = web.AppRunner(app, access_log=None)
    try:
        with pytest.raises(passthrough.AiortcIncompatible, match="cannot read the source"):
            await runner.setup()
    finally:
        await runner.cleanup()
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
