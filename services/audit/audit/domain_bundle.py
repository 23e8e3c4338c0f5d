"""Exports that verify themselves: a zip of the records (JSON lines or CSV, each record's
exact leaf data included) and a manifest with the signed tree head and each record's
inclusion proof; a proof document for one record; and their offline checks, which need
only the public key. No I/O (bundles are bytes in memory)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import domain, domain_signing
from audit import domain_merkle as merkle

Format = Literal["jsonl", "csv"]
MANIFEST = "manifest.json"
RECORDS = {"jsonl": "records.jsonl", "csv": "records.csv"}
CSV_COLUMNS = (
    "seq",
    "received_at",
    "topic",
    "partition",
    "offset",
    "event_id",
    "event_type",
    "source",
    "subject",
    "correlation_id",
    "causation_id",
    "actor",
    "occurred_at",
    "account",
    "leaf",
)


@dataclass(frozen=True)
class ExportedRecord:
    seq: int
    leaf: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class Check:
    valid: bool
    records_checked: int
    tree_size: int | None
    first_invalid_seq: int | None
    reason: str | None


def _csv_row(record: ExportedRecord) -> list[str]:
    fields = domain.read_record(record.leaf)
    values: dict[str, object] = {
        "seq": record.seq,
        "received_at": fields.received_at,
        "topic": fields.topic,
        "partition": fields.partition,
        "offset": fields.offset,
        "event_id": fields.event_id,
        "event_type": fields.event_type,
        "source": fields.source,
        "subject": fields.subject,
        "correlation_id": fields.correlation_id,
        "causation_id": fields.causation_id,
        "actor": fields.actor,
        "occurred_at": fields.occurred_at,
        "account": fields.account,
        "leaf": record.leaf.decode("utf-8"),
    }
    return ["" if values[c] is None else str(values[c]) for c in CSV_COLUMNS]


def build_bundle(
    records: Sequence[ExportedRecord],
    *,
    signed_head: domain_signing.SignedTreeHead,
    export_format: Format,
    filters: Mapping[str, Any],
    next_cursor: int | None,
) -> bytes:
    if export_format == "jsonl":
        # Each line is a record's leaf data exactly (canonical JSON has no raw newline).
        body = b"".join(record.leaf + b"\n" for record in records)
    else:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_csv_row(record) for record in records)
        body = text.getvalue().encode("utf-8")
    manifest = {
        "format": export_format,
        "records_file": RECORDS[export_format],
        "record_count": len(records),
        "filters": {k: v for k, v in filters.items() if v is not None},
        "next_cursor": next_cursor,
        "signed_tree_head": signed_head.to_json(),
        "leaf_index": "seq - 1",
        "proofs": [
            {
                "seq": record.seq,
                "leaf_hash": merkle.leaf_hash(record.leaf).hex(),
                "proof": [p.hex() for p in record.proof],
            }
            for record in records
        ],
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
        archive.writestr(RECORDS[export_format], body)
    return out.getvalue()


def proof_document(
    *, seq: int, leaf: bytes, proof: Sequence[bytes], signed_head: domain_signing.SignedTreeHead
) -> dict[str, Any]:
    return {
        "seq": seq,
        "leaf_index": seq - 1,
        "tree_size": signed_head.head.tree_size,
        "leaf": leaf.decode("utf-8"),
        "leaf_hash": merkle.leaf_hash(leaf).hex(),
        "proof": [p.hex() for p in proof],
        "signed_tree_head": signed_head.to_json(),
    }


def _head_problem(signed: domain_signing.SignedTreeHead, key: Ed25519PublicKey) -> str | None:
    if not domain_signing.signature_valid(signed, key):
        return "the tree head's signature does not verify with this public key"
    return None


def _included(seq: int, leaf: bytes, proof: Sequence[bytes], head: domain_signing.TreeHead) -> bool:
    return merkle.verify_inclusion(
        seq - 1, head.tree_size, merkle.leaf_hash(leaf), proof, head.root_hash
    )


def check_proof(document: Mapping[str, Any], key: Ed25519PublicKey) -> Check:
    """A proof document (GET /v1/proofs/{seq}): signed head, then the record's inclusion."""
    try:
        signed = domain_signing.SignedTreeHead.from_json(dict(document["signed_tree_head"]))
        seq = int(document["seq"])
        leaf = str(document["leaf"]).encode("utf-8")
        proof = [bytes.fromhex(p) for p in document["proof"]]
    except (KeyError, TypeError, ValueError) as error:
        return Check(False, 0, None, None, f"not a proof document: {error!r}")
    problem = _head_problem(signed, key)
    if problem is not None:
        return Check(False, 0, signed.head.tree_size, None, problem)
    if not _included(seq, leaf, proof, signed.head):
        return Check(
            False, 1, signed.head.tree_size, seq,
            "the record is not in the signed tree as it stands (changed, or a wrong proof)",
        )  # fmt: skip
    return Check(True, 1, signed.head.tree_size, None, None)


def _leaves_of(
    names: list[str], archive: zipfile.ZipFile, manifest: Mapping[str, Any]
) -> list[tuple[bytes, list[str] | None]]:
    records_file = str(manifest["records_file"])
    if records_file not in names:
        raise ValueError(f"the bundle has no {records_file}")
    body = archive.read(records_file)
    if manifest["format"] == "jsonl":
        return [(line, None) for line in body.split(b"\n") if line]
    reader = csv.reader(io.StringIO(body.decode("utf-8")))
    header = next(reader, None)
    if header is None or tuple(header) != CSV_COLUMNS:
        raise ValueError("the CSV header is not the export's")
    return [(row[-1].encode("utf-8"), row) for row in reader]


def check_bundle(bundle: bytes, key: Ed25519PublicKey) -> Check:
    """Every record of an export is in the signed tree, its readable columns (CSV) say
    what its leaf data says, and no record was added to or left out of the manifest."""
    try:
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            names = archive.namelist()
            manifest = json.loads(archive.read(MANIFEST))
            rows = _leaves_of(names, archive, manifest)
        signed = domain_signing.SignedTreeHead.from_json(dict(manifest["signed_tree_head"]))
        proofs = [
            (int(p["seq"]), [bytes.fromhex(h) for h in p["proof"]]) for p in manifest["proofs"]
        ]
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile) as error:
        return Check(False, 0, None, None, f"not an export bundle: {error!r}")
    head = signed.head
    problem = _head_problem(signed, key)
    if problem is not None:
        return Check(False, 0, head.tree_size, None, problem)
    if len(rows) != len(proofs) or len(rows) != manifest.get("record_count"):
        return Check(
            False, 0, head.tree_size, None,
            f"{len(rows)} records, {len(proofs)} proofs, manifest says "
            f"{manifest.get('record_count')} (records added or removed)",
        )  # fmt: skip
    for checked, ((leaf, csv_row), (seq, proof)) in enumerate(zip(rows, proofs, strict=True), 1):
        if not _included(seq, leaf, proof, head):
            return Check(
                False, checked, head.tree_size, seq,
                f"record {seq} is not in the signed tree as exported (changed or reordered)",
            )  # fmt: skip
        if csv_row is not None:
            try:
                expected = _csv_row(ExportedRecord(seq, leaf, []))
            except domain.RecordUnreadable as error:
                return Check(False, checked, head.tree_size, seq, f"unreadable: {error}")
            for column, got, want in zip(CSV_COLUMNS, csv_row, expected, strict=False):
                if got != want:
                    return Check(
                        False, checked, head.tree_size, seq,
                        f"record {seq}: column {column} differs from the record's content",
                    )  # fmt: skip
    return Check(True, len(rows), head.tree_size, None, None)
