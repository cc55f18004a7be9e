"""The synchronous Redis client of the stores that answer a request on the event loop (the
accounts, the codes, the desk, the visits database).

A dead or restarting Redis must cost a request milliseconds, not stall every page of the
node: redis-py's default retries three times with a growing backoff (4.3 s measured per call
against a closed port). One immediate retry remains: it reconnects a pooled connection that
Redis closed (a Redis restart) without the caller seeing it."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

TIMEOUT = 1.0  # seconds: a request fails rather than holding the event loop longer


def sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )
