"""The desk's integration tests run a real server in-process (the signaling fixture)."""

from tests.integration.signaling.conftest import running  # noqa: F401 - the fixture
