"""Audit records: the canonical document each record's leaf hash covers, the searchable
fields read from it, the causation tree of a trade, and the check of stored records against
the Merkle tree and the signed tree heads. No I/O.

A record's leaf data is the canonical JSON (sorted keys, no whitespace, UTF-8: RFC 8785 for
what our envelopes hold, which has no floats) of
`{"seq", "topic", "partition", "offset", "received_at", "event"}`, so the hash covers where
and when the event was received as well as the event itself. Records written before the
Merkle tree (revision 0003) hold the event alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit import domain_merkle as merkle

QUERY_EVENT = "audit.records_queried"
TREE_HEAD_EVENT = "audit.tree_head_signed"


class RecordUnreadable(ValueError):
    """A stored record's bytes are not a JSON record document."""


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_document(
    *,
    seq: int,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    received_at: datetime,
    event: Mapping[str, Any] | None = None,
    event_json: bytes | None = None,
) -> bytes:
    """The leaf data of a record: the event verbatim with where and when it was received.

    The event as a value, or already as its canonical JSON (`event_json`, which the record's
    payload hash covers too): spliced in as the first member ("event" sorts first), the same
    bytes as the canonical JSON of the whole document, without encoding the event twice."""
    if event_json is None:
        if event is None:
            raise ValueError("a record document needs its event")
        event_json = canonical_json(event)
    return b"".join(
        (
            b'{"event":',
            event_json,
            b',"offset":',
            canonical_json(offset),
            b',"partition":',
            canonical_json(partition),
            b',"received_at":',
            canonical_json(received_at.isoformat()),
            b',"seq":',
            canonical_json(seq),
            b',"topic":',
            canonical_json(topic),
            b"}",
        )
    )


@dataclass(frozen=True)
class RecordFields:
    """What the search columns hold, as read from a record's leaf data."""

    seq: int | None
    event_id: str
    event_type: str
    source: str
    subject: str
    correlation_id: str
    causation_id: str | None
    actor: str
    occurred_at: str
    account: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    received_at: str | None
    event: dict[str, Any] = field(compare=False)


def account_of(event: Mapping[str, Any]) -> str | None:
    data = event.get("data")
    account = data.get("account") if isinstance(data, Mapping) else None
    return account if isinstance(account, str) else None


def read_record(leaf: bytes) -> RecordFields:
    try:
        document = json.loads(leaf)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordUnreadable(f"not JSON: {error}") from error
    if not isinstance(document, dict):
        raise RecordUnreadable("not a JSON object")
    is_document = "event" in document and "seq" in document
    event = document["event"] if is_document else document
    if not isinstance(event, dict):
        raise RecordUnreadable("its event is not a JSON object")
    try:
        return RecordFields(
            seq=document["seq"] if is_document else None,
            event_id=str(event["id"]),
            event_type=str(event["type"]),
            source=str(event["source"]),
            subject=str(event["subject"]),
            correlation_id=str(event["correlation_id"]),
            causation_id=event.get("causation_id"),
            actor=str(event["actor"]),
            occurred_at=str(event["time"]),
            account=account_of(event),
            topic=document.get("topic") if is_document else None,
            partition=document.get("partition") if is_document else None,
            offset=document.get("offset") if is_document else None,
            received_at=document.get("received_at") if is_document else None,
            event=event,
        )
    except KeyError as error:
        raise RecordUnreadable(f"its event has no {error.args[0]!r}") from error


@dataclass(frozen=True)
class StoredRecord:
    """A record as the database holds it: its leaf data, the columns searched on, and the
    leaf hash stored in the tree (None if that node is missing)."""

    seq: int
    leaf: bytes
    event_id: str
    event_type: str
    correlation_id: str
    account: str | None
    actor: str
    source: str
    stored_leaf_hash: bytes | None


@dataclass(frozen=True)
class SignedHead:
    tree_size: int
    root_hash: bytes


@dataclass(frozen=True)
class Verification:
    valid: bool
    records_checked: int
    tree_size: int
    root_hash: bytes
    heads_checked: int
    first_invalid_seq: int | None
    reason: str | None


def _column_mismatch(record: StoredRecord, fields: RecordFields) -> str | None:
    expected: dict[str, str | None] = {
        "event_id": fields.event_id,
        "event_type": fields.event_type,
        "correlation_id": fields.correlation_id,
        "account": fields.account,
        "actor": fields.actor,
        "source": fields.source,
    }
    if fields.seq is None:
        # Written before revision 0003, which added the account column: null for these.
        expected["account"] = record.account
    for name, value in expected.items():
        if getattr(record, name) != value:
            return f"column {name} does not match the record's content"
    if fields.seq is not None and fields.seq != record.seq:
        return f"the record's content says seq {fields.seq}"
    return None


class TreeCheck:
    """Recompute the tree from the records fed in seq order (leaf index = seq - 1) and name
    the first record that does not match: a seq out of order (removed or reordered),
    content whose hash is not the stored leaf hash (changed), search columns that disagree
    with the content, or a root that differs from a signed tree head at that size (the
    record and its stored hash both rewritten). Fed one record at a time, so that a log of
    millions is checked in constant memory."""

    def __init__(self, signed_heads: Iterable[SignedHead]) -> None:
        self._heads = sorted(signed_heads, key=lambda head: head.tree_size)
        self._head_at = 0
        self._frontier = merkle.Frontier()
        self._checked = 0
        self.failure: Verification | None = None

    def _fail(self, seq: int | None, reason: str) -> Verification:
        self.failure = Verification(
            False,
            self._checked,
            self._frontier.size,
            self._frontier.root(),
            self._head_at,
            seq,
            reason,
        )
        return self.failure

    def feed(self, record: StoredRecord) -> Verification | None:
        """None while every record so far matches; the failure once one does not."""
        if self.failure is not None:
            return self.failure
        self._checked += 1
        expected_seq = self._frontier.size + 1
        if record.seq != expected_seq:
            return self._fail(
                min(record.seq, expected_seq),
                f"expected record {expected_seq}, found {record.seq} (removed or reordered)",
            )
        hashed = merkle.leaf_hash(record.leaf)
        if record.stored_leaf_hash is None:
            return self._fail(record.seq, "no stored leaf hash for this record")
        if record.stored_leaf_hash != hashed:
            return self._fail(record.seq, "its content does not match its stored leaf hash")
        try:
            mismatch = _column_mismatch(record, read_record(record.leaf))
        except RecordUnreadable as error:
            return self._fail(record.seq, f"unreadable: {error}")
        if mismatch is not None:
            return self._fail(record.seq, mismatch)
        self._frontier = merkle.append(self._frontier, [hashed]).frontier
        heads = self._heads
        while self._head_at < len(heads) and heads[self._head_at].tree_size == self._frontier.size:
            if heads[self._head_at].root_hash != self._frontier.root():
                return self._fail(
                    None,
                    f"the root of the first {self._frontier.size} records differs from the "
                    "signed tree head of that size (records and their hashes rewritten)",
                )
            self._head_at += 1
        return None

    def finish(self, tree_size: int | None = None) -> Verification:
        """The outcome; `tree_size`, the size the log's head says, must be reached too."""
        if self.failure is not None:
            return self.failure
        if tree_size is not None and self._frontier.size < tree_size:
            return self._fail(
                self._frontier.size + 1,
                f"the tree holds {tree_size} records, only {self._frontier.size} are stored "
                "(removed)",
            )
        if self._head_at < len(self._heads):
            return self._fail(
                self._frontier.size + 1,
                f"a tree head was signed for {self._heads[self._head_at].tree_size} records, "
                f"only {self._frontier.size} are stored (removed)",
            )
        return Verification(
            True,
            self._checked,
            self._frontier.size,
            self._frontier.root(),
            self._head_at,
            None,
            None,
        )


def verify(
    records: Iterable[StoredRecord],
    signed_heads: Iterable[SignedHead],
    *,
    tree_size: int | None = None,
) -> Verification:
    check = TreeCheck(signed_heads)
    for record in records:
        if check.feed(record) is not None:
            break
    return check.finish(tree_size)


@dataclass(frozen=True)
class LineageNode:
    seq: int
    event: dict[str, Any]
    children: list[LineageNode]


def lineage(records: Iterable[tuple[int, Mapping[str, Any]]]) -> list[LineageNode]:
    """The causation tree of a trade's events: each event under the event that caused it
    (its causation_id), roots being events whose cause is not among them; siblings in the
    order they happened (event time, then seq)."""
    nodes: dict[str, LineageNode] = {}
    parents: dict[str, str | None] = {}
    for seq, event in records:
        event_id = str(event["id"])
        if event_id in nodes:
            continue
        nodes[event_id] = LineageNode(seq, dict(event), [])
        cause = event.get("causation_id")
        parents[event_id] = str(cause) if cause is not None else None
    roots: list[LineageNode] = []
    for event_id, node in nodes.items():
        parent = parents[event_id]
        if parent is not None and parent in nodes and parent != event_id:
            nodes[parent].children.append(node)
        else:
            roots.append(node)

    def order(node: LineageNode) -> tuple[str, int]:
        return (str(node.event.get("time", "")), node.seq)

    for node in nodes.values():
        node.children.sort(key=order)
    roots.sort(key=order)
    return roots
