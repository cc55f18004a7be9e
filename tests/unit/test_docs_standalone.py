"""The repository stands alone: no file points at design notes outside it, and every requirement
id used anywhere (R1–R18, feature ids such as A1 or B3) is defined in docs/requirements.md, whose
rows name code and tests that exist."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "docs" / "requirements.md"
SKIP_DIRS = {
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "data",
    "build",
    "tmp",
}
TEXT_SUFFIXES = {".py", ".md", ".js", ".mjs", ".html", ".css", ".toml", ".sh", ".txt", ".cfg"}
TEXT_DIRS = {"scripts", ".ci"}  # their files have no suffix

# Pointers to material that is not in the repository: the design folder the project started
# from, its notes and research, and absolute paths of the machine it was written on.
OUTSIDE = re.compile(
    "|".join(
        [
            r"DESIGN" r"\.md",
            r"(?<![\w.-])shared" r"/",
            r"(?<![\w.-])notes" r"/",
            r"(?<![\w.-])research" r"/",
            r"/work" r"/",
        ]
    )
)
# R: hard rules; A admission, B rooms, L the duty-lawyer desk, M, S, V: the letters the design's
# feature and source keys used. Two digits at most, whole words only (a hex digest never matches).
REQUIREMENT_ID = re.compile(r"(?<![\w/#-])([RABLMSV]\d{1,2})(?![\w-])")
# Tokens of that shape that are something else, with what they are.
NOT_REQUIREMENT_IDS = {
    "A4": "the ISO 216 paper size of the agreement PDF",
    "B64": "esign's type of a base64 string field",
}


def repo_text_files() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        here = Path(dirpath)
        for name in filenames:
            path = here / name
            if path.suffix in TEXT_SUFFIXES or (
                not path.suffix and here.relative_to(ROOT).parts[:1] in {(d,) for d in TEXT_DIRS}
            ):
                out.append(path)
    return sorted(out)


def defined_ids() -> dict[str, list[str]]:
    """id -> the cells of its row in docs/requirements.md."""
    rows: dict[str, list[str]] = {}
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and re.fullmatch(r"[A-Z]\d{1,2}", cells[0]):
            assert cells[0] not in rows, f"{cells[0]} is defined twice"
            rows[cells[0]] = cells
    return rows


def test_the_scan_sees_the_whole_repository():
    files = {p.relative_to(ROOT).as_posix() for p in repo_text_files()}
    for expected in (
        "README.md",
        "docs/architecture.md",
        "rooms/policy.py",
        "web/static/app.js",
        "web/join.html",
        "pyproject.toml",
        "scripts/test",
        "tests/unit/test_docs_standalone.py",
    ):
        assert expected in files
    assert not any(f.startswith((".venv/", "web/node_modules/")) for f in files)


def test_no_file_points_outside_the_repository():
    me = Path(__file__).resolve()
    found = []
    for path in repo_text_files():
        if path == me:
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
            for m in OUTSIDE.finditer(line):
                found.append(f"{path.relative_to(ROOT)}:{no + 1}: {m.group(0)!r} in {line.strip()}")
    assert found == [], "\n".join(found)


def test_every_requirement_id_used_is_defined():
    defined = defined_ids()
    missing = []
    for path in repo_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for no, line in enumerate(text.splitlines()):
            for m in REQUIREMENT_ID.finditer(line):
                token = m.group(1)
                if token not in defined and token not in NOT_REQUIREMENT_IDS:
                    missing.append(f"{path.relative_to(ROOT)}:{no + 1}: {token} in {line.strip()}")
    assert missing == [], "ids used but not defined in docs/requirements.md:\n" + "\n".join(missing)


def test_every_hard_rule_is_defined_with_source_code_and_proof():
    rows = defined_ids()
    assert {f"R{i}" for i in range(1, 19)} <= set(rows)
    for rid, cells in rows.items():
        assert len(cells) == 5, f"{rid}: id | requirement | source | implemented in | proven by"
        _, text, source, where, proof = cells
        assert len(text) > 20 and source, rid
        assert where and proof, rid
        if rid.startswith("R"):
            assert "not yet built" in where or proof != "—", f"{rid}: built but proven by nothing"
    assert not set(rows) & set(NOT_REQUIREMENT_IDS)


@pytest.mark.parametrize(
    "kind,pattern",
    [
        ("test file", r"`(tests/[\w/]+\.py)(?:::\w+)?`"),
        ("module", r"`((?:rooms|media|esign|signaling|recording)/\w+\.py)`"),
    ],
)
def test_requirements_name_files_that_exist(kind, pattern):
    text = REQUIREMENTS.read_text(encoding="utf-8")
    named = set(re.findall(pattern, text))
    assert named, f"no {kind} named"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []


def test_requirements_name_tests_that_exist():
    """A row that cites ``file.py::test_name`` names a test defined in that file."""
    text = REQUIREMENTS.read_text(encoding="utf-8")
    bad = []
    for path, names in re.findall(r"`(tests/[\w/]+\.py)((?:::\w+)?)`", text):
        if names:
            source = (ROOT / path).read_text(encoding="utf-8")
            if not re.search(rf"def {names[2:]}\(", source):
                bad.append(path + names)
    # "`file.py::a`, `::b`": the second name is in the same file as the one before it
    for path, rest in re.findall(r"`(tests/[\w/]+\.py)::\w+`((?:, `::\w+`)+)", text):
        source = (ROOT / path).read_text(encoding="utf-8")
        for name in re.findall(r"`::(\w+)`", rest):
            if not re.search(rf"def {name}\(", source):
                bad.append(f"{path}::{name}")
    assert bad == []
