"""Every error code the server can send to the phone page has a plain sentence with a next step,
in Chinese and in English, in web/static/i18n.js (``err_<code>``): the page shows
``i18n.error(code)``, never the raw code.

The codes are collected from the source (ast): the first argument of every error constructor
the phone can receive (CommandError, TokenError, EsignError, MediaError, OtpError, the socket's
``_error``/``_refusal``, the documents route's ``_fail``/``_Refused``), ``{"code": ...}``
literals, strings assigned to ``code``, and the conductor's closing reasons."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("signaling", "rooms", "esign", "media")
# staff pages (HTML forms, their own words) and visitation are not the phone page
NOT_THE_PHONE = {"console.py", "staff.py", "accounts.py", "visits_console.py",
                 "visits_directory.py", "visits_pages.py", "guard.py"}  # fmt: skip
CONSTRUCTORS = {"CommandError", "TokenError", "EsignError", "MediaError", "OtpError", "_Refused",
                "_error", "_refusal", "_fail", "BadMessage", "ErrorReply"}  # fmt: skip


def _name(func) -> str | None:
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _const(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def server_codes() -> dict[str, str]:
    codes: dict[str, str] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            if path.name in NOT_THE_PHONE:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                found = []
                if isinstance(node, ast.Call) and _name(node.func) in CONSTRUCTORS and node.args:
                    found.append(_const(node.args[0]))
                elif isinstance(node, ast.Dict):
                    for k, v in zip(node.keys, node.values, strict=True):
                        if k is not None and _const(k) == "code":
                            found.append(_const(v))
                elif isinstance(node, ast.Assign):
                    targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
                    if "code" in targets:
                        value = node.value
                        pool = (
                            [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
                        )
                        found.extend(_const(v) for v in pool)
                    if "_CLOSING" in targets and isinstance(node.value, ast.Dict):
                        found.extend(_const(k) for k in node.value.keys)
                for code in found:
                    if code and code.replace("_", "").isalpha() and code.islower():
                        codes.setdefault(code, f"{pkg}/{path.name}")
    return codes


def test_the_collector_finds_the_codes_we_know():
    codes = server_codes()
    for code in ("session_ended", "identity_not_verified", "participant_gone", "replaced",
                 "in_use", "too_many_documents", "rate_limited", "conflict", "session_not_found"):  # fmt: skip
        assert code in codes, code
    assert len(codes) > 60


@pytest.mark.skipif(not shutil.which("node"), reason="node runs i18n.js")
def test_every_server_error_code_has_a_sentence_in_both_languages():
    script = """global.window = {}; global.localStorage = {getItem: () => null, setItem() {}};
      global.navigator = {language: 'zh'};
      global.document = {documentElement: {}, querySelectorAll: () => [], getElementById: () => null};
      require(process.argv[1]); const codes = JSON.parse(process.argv[2]); const out = {};
      for (const lang of ['zh', 'en']) { out[lang] = {};
        for (const c of codes) out[lang][c] = window.i18n.has('err_' + c, lang) ? window.i18n.error(c) : null;
        window.i18n.toggle(); }
      console.log(JSON.stringify(out));"""
    codes = server_codes()
    got = json.loads(
        subprocess.run(
            ["node", "-e", script, str(ROOT / "web/static/i18n.js"), json.dumps(sorted(codes))],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    missing = [f"{lang}: {c} ({codes[c]})" for lang in got for c, t in got[lang].items() if not t]
    assert missing == [], "codes without a sentence:\n" + "\n".join(missing)
    for c in codes:
        zh, en = got["zh"][c], got["en"][c]
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh), (c, zh)
        assert c not in zh, (c, zh)  # the raw code is never the message
        assert "_" not in en, (c, en)
        assert "出错了" not in zh and not en.lower().startswith("error"), (c, zh, en)
