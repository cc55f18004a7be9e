"""A failure whose traceback pytest cannot format fails that test; the run goes on."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

INNER_CONFTEST = """
import _pytest._code.code as code

def _broken(self, *args, **kwargs):  # what a frame without a line number does to pytest
    raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'int'")

code.TracebackEntry.getsource = _broken
"""

INNER_TESTS = """
def test_fails():
    assert 1 == 2, "the real failure"

def test_runs_after():
    assert True
"""


def _run(tmp_path: Path, *plugin: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "test_inner.py"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_the_plugin_the_run_crashes(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 3 and "INTERNALERROR" in result.stdout, result.stdout[-2000:]


def test_with_the_plugin_the_test_fails_and_the_run_goes_on(tmp_path):
    result = _run(tmp_path, "-p", "tests.support.plain_failure_reports")
    out = result.stdout
    assert result.returncode == 1, out[-2000:]
    assert "INTERNALERROR" not in out
    assert "1 failed, 1 passed" in out
    assert "AssertionError: the real failure" in out
    assert "could not format" in out
