"""Suite-wide order of the tests.

Alone (one process), the end-to-end browser tests run last: they are the slowest, and sync
Playwright keeps an event loop of its own in the main thread while a browser module is open.

With ``-n 2`` (pytest-xdist, ``--dist loadgroup``: the README's test command), the browser tests
are one group, run one after another by one worker, and come first: that worker spends the run
on them while the other takes the unit and integration tests; sent last, the group would start
when everything else is done and the run would take as long as both halves together."""

import pytest

pytest_plugins = ["tests.support.plain_failure_reports"]

BROWSERS = "browsers"  # the xdist group of every e2e test


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups in the node ids
def pytest_collection_modifyitems(config, items):
    # the workers collect (and their order is the one scheduled); the controller has -n
    parallel = hasattr(config, "workerinput") or bool(getattr(config.option, "numprocesses", 0))
    e2e = {id(item) for item in items if item.get_closest_marker("e2e") is not None}
    items.sort(key=lambda item: (id(item) in e2e) != parallel)
    if parallel:
        for item in items:
            if id(item) in e2e:
                item.add_marker(pytest.mark.xdist_group(BROWSERS))


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
