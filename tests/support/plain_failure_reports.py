"""A pytest plugin: a failure pytest cannot format is still reported as a failure.

CPython 3.11 can leave a traceback entry without a line number (``tb_lineno`` None) when an
exception is raised from a signal handler, as pytest-timeout's is; pytest then crashes while
formatting that test's failure (INTERNALERROR) and the whole run ends there, every later test
unrun. Here the report falls back to a plain one (the exception, its type and where it was
raised as far as known): the test fails, the run goes on."""

from __future__ import annotations

import pytest
from _pytest.reports import TestReport


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    try:
        return (yield)
    except Exception as crash:  # the formatting failed, not the test's own assertion
        excinfo = call.excinfo
        what = f"{excinfo.typename}: {excinfo.value}" if excinfo else "unknown failure"
        text = (
            f"{what}\n(pytest could not format this failure's traceback: "
            f"{type(crash).__name__}: {crash})"
        )
        return TestReport(
            item.nodeid,
            item.location,
            {name: 1 for name in item.keywords},
            "failed",
            text,
            call.when,
            [],
            call.duration,
            call.start,
            call.stop,
            user_properties=item.user_properties,
        )
