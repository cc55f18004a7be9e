"""The end-to-end tests wait on state under one deadline (tests/e2e/conftest.py), never on time:
no sleeps, no fixed waits, no timeout written as a number in a test. A literal ``timeout=15000``
is what made a signing test fail on a busy machine and pass alone."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXED = re.compile(
    r"wait_for_timeout\(|time\.sleep\(|asyncio\.sleep\(|timeout\s*=\s*\d|\.timeout\(\d|timeoutMs:\s*\d"
)


def test_no_fixed_waits_in_the_e2e_tests():
    found = [
        f"{path.name}:{no}: {line.strip()}"
        for path in sorted(HERE.glob("*.py"))
        if path.name != Path(__file__).name
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FIXED.search(line)
    ]
    assert found == [], "\n".join(found)
