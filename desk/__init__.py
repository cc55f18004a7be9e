"""The duty-lawyer consultation desk: service points, the duty roster, the queue and its store.

Pure logic (``roster``, ``queue``, ``codes``) takes the time as an argument so that it is tested
with a simulated clock; ``store`` keeps points, shifts, lawyers' status and tickets in
``desk.sqlite3`` in the data directory. HTTP and sessions are in ``signaling/desk*.py``.
"""
