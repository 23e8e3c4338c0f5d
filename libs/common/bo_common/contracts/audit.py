"""Events of the audit service: signed tree heads, published on audit.events (keyed by the
log's name), and the record of each query of the audit API, which is appended to the audit
log itself (not published)."""

from __future__ import annotations

from typing import Any

from bo_common.contracts._base import EventData

TREE_HEAD_SIGNED = "audit.tree_head_signed"
RECORDS_QUERIED = "audit.records_queried"


class TreeHeadSigned(EventData):
    """RFC 9162 tree head of the first `tree_size` records, signed with Ed25519 over the
    canonical JSON of {log, tree_size, root_hash, timestamp}; `key_id` is the SHA-256 of
    the raw public key (GET /v1/public-key)."""

    log: str
    tree_size: int
    root_hash: str  # hex
    timestamp: str  # UTC ISO-8601, as signed
    key_id: str
    signature: str  # base64


class RecordsQueried(EventData):
    """Who looked: a query of the audit API, its filter and how many records it returned."""

    route: str
    filters: dict[str, Any]
    records_returned: int
    key_id: str
    key_name: str
    role: str
