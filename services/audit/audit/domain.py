"""The hash chain: each record's hash covers its sequence number, its payload and the
previous record's hash, so changing, removing or reordering any record breaks every hash
after it. No I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

GENESIS_HASH = "0" * 64


def payload_hash(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def record_hash(seq: int, payload_digest: str, previous_hash: str) -> str:
    material = f"{seq}:{payload_digest}:{previous_hash}".encode("ascii")
    return hashlib.sha256(material).hexdigest()


@dataclass(frozen=True)
class StoredRecord:
    seq: int
    payload: bytes
    payload_hash: str
    previous_hash: str
    record_hash: str


@dataclass(frozen=True)
class Verification:
    valid: bool
    records_checked: int
    first_invalid_seq: int | None
    reason: str | None


def verify(
    records: Iterable[StoredRecord], *, start_hash: str = GENESIS_HASH, start_seq: int = 1
) -> Verification:
    previous, expected_seq, checked = start_hash, start_seq, 0
    for record in records:
        checked += 1
        if record.seq != expected_seq:
            return Verification(
                False, checked, record.seq, f"expected record {expected_seq}, found {record.seq}"
            )
        if payload_hash(record.payload) != record.payload_hash:
            return Verification(False, checked, record.seq, "payload does not match its hash")
        if record.previous_hash != previous:
            return Verification(False, checked, record.seq, "previous hash does not chain")
        if record_hash(record.seq, record.payload_hash, previous) != record.record_hash:
            return Verification(False, checked, record.seq, "record hash is wrong")
        previous, expected_seq = record.record_hash, expected_seq + 1
    return Verification(True, checked, None, None)
