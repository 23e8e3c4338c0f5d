"""Audit: the append-only, hash-chained record of every event."""
