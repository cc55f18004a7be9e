"""Durable before acknowledged, without the event loop waiting on the disk.

The ledger commits each append at once and a background thread syncs the commits to disk in
groups (``SqliteLedgerStore(sync="group")``). Nothing may be acknowledged before it is on disk,
so every answer — an HTTP response, a socket.io reply — first awaits the ledger's durability
barrier. An answer that appended nothing passes the barrier at once.
"""

from __future__ import annotations

from aiohttp import web


def durable_answers(service):
    """aiohttp middleware: the response leaves only when the appends it made are on disk."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        try:
            return await handler(request)
        finally:
            await service.durable()

    return middleware
