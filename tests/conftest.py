"""Suite-wide order of the tests.

Alone (one process), the end-to-end browser tests run last: they are the slowest, and sync
Playwright keeps an event loop of its own in the main thread while a browser module is open.

With ``-n 2`` (pytest-xdist, ``--dist loadgroup``: the README's test command), the browser tests
are one group, run one after another by one worker, and come first: that worker spends the run
on them while the other takes the unit and integration tests; sent last, the group would start
when everything else is done and the run would take as long as both halves together.

The browser half is the longer one (2026-12-02, this 2-core machine: 871 s for the whole run,
the other half 634 s alone), so a few browser tests that time no media (``LATE``: pages that
refuse a faulty server's document, ~80 s) are a second group, sent last: the other worker takes
them when its half is done, while the first is still on the rest of the browser tests."""

import pytest

pytest_plugins = ["tests.support.plain_failure_reports"]

BROWSERS = "browsers"  # the xdist group of every e2e test but LATE's
LATE = ("tests/e2e/test_agreement_signing.py::test_the_page_refuses_what_a_faulty_server_made",)


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups in the node ids
def pytest_collection_modifyitems(config, items):
    # the workers collect (and their order is the one scheduled); the controller has -n
    parallel = hasattr(config, "workerinput") or bool(getattr(config.option, "numprocesses", 0))
    e2e = {id(item) for item in items if item.get_closest_marker("e2e") is not None}
    late = {id(item) for item in items if id(item) in e2e and item.nodeid.startswith(LATE)}
    if parallel:  # the browsers first, then the rest, then the late browsers
        items.sort(key=lambda item: 2 if id(item) in late else id(item) not in e2e)
        for item in items:
            if id(item) in e2e:
                group = BROWSERS + "-late" if id(item) in late else BROWSERS
                item.add_marker(pytest.mark.xdist_group(group))
    else:
        items.sort(key=lambda item: id(item) in e2e)


def pytest_terminal_summary(terminalreporter):
    """A browser test that failed once and passed on its rerun (tests/e2e/conftest.py gives each
    one rerun) is printed with what its servers and pages said in the failed attempt. Here, not
    in tests/e2e/conftest.py: with -n 2 the controlling process, which prints the summary, only
    loads the conftest files of the paths it was given."""
    reruns = terminalreporter.stats.get("rerun", [])
    if not reruns:
        return
    terminalreporter.write_sep("=", "browser tests that failed once and ran again: the attempt")
    for report in reruns:
        terminalreporter.write_line(f"RERUN {report.nodeid}")
        crash = getattr(report.longrepr, "reprcrash", None)
        terminalreporter.write_line(f"  {crash.message if crash else str(report.longrepr)[-600:]}")
        for title, text in report.sections:
            if title.startswith(("server ", "page ")):
                terminalreporter.write_line(f"  -- {title}")
                for line in text.splitlines()[-40:]:
                    terminalreporter.write_line(
                        "  " + line[: 3000 if line.startswith("now:") else 300]
                    )
