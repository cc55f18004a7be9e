"""Suite-wide: end-to-end browser tests run last (they are the slowest, and sync Playwright
keeps an event loop of its own in the main thread while a browser module is open)."""

pytest_plugins = ["tests.support.plain_failure_reports"]


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
