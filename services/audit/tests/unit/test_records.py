"""Audit records, pure: the check of stored records names the first changed, removed,
reordered or mislabelled record, or a root that differs from a signed head; lineage puts
each event under its cause; signed tree heads and export bundles verify with the public
key alone, and refuse any change."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from audit import domain, domain_bundle, domain_signing
from audit import domain_merkle as merkle

NOW = datetime(2026, 11, 20, 14, 31, 7, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def event(n: int, *, cause: int | None = None, minutes: int = 0) -> dict[str, object]:
    return {
        "id": f"00000000-0000-0000-0000-{n:012d}",
        "type": "trade.captured" if cause is None else "ledger.posted",
        "version": 1,
        "source": "gateway" if cause is None else "ledger",
        "subject": "T-1",
        "time": (NOW + timedelta(minutes=minutes)).isoformat(),
        "correlation_id": "T-1",
        "causation_id": None if cause is None else f"00000000-0000-0000-0000-{cause:012d}",
        "actor": "key:fo",
        "data": {"account": "ACC-001", "n": n},
    }


def stored(count: int) -> list[domain.StoredRecord]:
    records = []
    for seq in range(1, count + 1):
        body = event(seq)
        leaf = domain.record_document(
            seq=seq, topic="trade.events", partition=seq % 6, offset=seq, received_at=NOW,
            event=body,
        )  # fmt: skip
        records.append(
            domain.StoredRecord(
                seq=seq,
                leaf=leaf,
                event_id=str(body["id"]),
                event_type=str(body["type"]),
                correlation_id="T-1",
                account="ACC-001",
                actor="key:fo",
                source=str(body["source"]),
                stored_leaf_hash=merkle.leaf_hash(leaf),
            )
        )
    return records


def head_of(records: list[domain.StoredRecord], size: int) -> domain.SignedHead:
    appended = merkle.append(merkle.Frontier(), [merkle.leaf_hash(r.leaf) for r in records[:size]])
    return domain.SignedHead(size, appended.frontier.root())


@given(st.integers(min_value=0, max_value=40), st.data())
def test_intact_records_verify_against_every_signed_head(count: int, data: st.DataObject) -> None:
    records = stored(count)
    sizes = (
        data.draw(st.sets(st.integers(min_value=1, max_value=max(count, 1)))) if count else set()
    )
    outcome = domain.verify(records, [head_of(records, s) for s in sizes], tree_size=count)

    assert outcome.valid, outcome
    assert outcome.records_checked == count
    assert outcome.heads_checked == len(sizes)
    assert outcome.root_hash == head_of(records, count).root_hash if count else merkle.EMPTY_ROOT


@given(st.integers(min_value=2, max_value=30), st.data())
def test_one_changed_byte_is_named(count: int, data: st.DataObject) -> None:
    records = stored(count)
    index = data.draw(st.integers(min_value=0, max_value=count - 1))
    leaf = records[index].leaf
    at = leaf.index(b'"n":') + 4
    digit = b"8" if leaf[at : at + 1] == b"9" else b"9"
    records[index] = replace(records[index], leaf=leaf[:at] + digit + leaf[at + 1 :])

    outcome = domain.verify(records, [])

    assert not outcome.valid
    assert outcome.first_invalid_seq == index + 1
    assert outcome.reason is not None and "content" in outcome.reason


@given(st.integers(min_value=3, max_value=30), st.data())
def test_a_removed_or_swapped_record_is_named(count: int, data: st.DataObject) -> None:
    records = stored(count)
    index = data.draw(st.integers(min_value=0, max_value=count - 2))

    removed = records[:index] + records[index + 1 :]
    outcome = domain.verify(removed, [])
    assert (outcome.valid, outcome.first_invalid_seq) == (False, index + 1)

    swapped = list(records)
    swapped[index], swapped[index + 1] = swapped[index + 1], swapped[index]
    outcome = domain.verify(swapped, [])
    assert (outcome.valid, outcome.first_invalid_seq) == (False, index + 1)


def test_the_last_records_removed_are_found_from_the_tree_size_or_a_signed_head() -> None:
    records = stored(10)

    by_size = domain.verify(records[:8], [], tree_size=10)
    by_head = domain.verify(records[:8], [head_of(records, 10)])

    assert (by_size.valid, by_size.first_invalid_seq) == (False, 9)
    assert (by_head.valid, by_head.first_invalid_seq) == (False, 9)
    assert by_head.reason is not None and "removed" in by_head.reason


def test_a_search_column_that_disagrees_with_the_content_is_named() -> None:
    records = stored(5)
    records[2] = replace(records[2], correlation_id="T-2")

    outcome = domain.verify(records, [])

    assert (outcome.valid, outcome.first_invalid_seq) == (False, 3)
    assert outcome.reason is not None and "correlation_id" in outcome.reason


def test_a_record_rewritten_with_its_stored_hash_differs_from_the_signed_head() -> None:
    records = stored(8)
    heads = [head_of(records, 8)]
    forged = records[3].leaf.replace(b'"n":4', b'"n":5')
    records[3] = replace(records[3], leaf=forged, stored_leaf_hash=merkle.leaf_hash(forged))

    outcome = domain.verify(records, heads)

    assert not outcome.valid
    assert outcome.reason is not None and "signed tree head" in outcome.reason


def test_lineage_puts_each_event_under_its_cause_in_time_order() -> None:
    events = [
        (1, event(1)),
        (4, event(4, cause=1, minutes=3)),
        (2, event(2, cause=1, minutes=1)),
        (3, event(3, cause=2, minutes=2)),
        (5, event(5, cause=99, minutes=4)),  # its cause is not among them: a root
        (6, event(2, cause=1, minutes=1)),  # the same event again: once
    ]

    roots = domain.lineage(events)

    assert [root.seq for root in roots] == [1, 5]
    assert [child.seq for child in roots[0].children] == [2, 4]
    assert [child.seq for child in roots[0].children[0].children] == [3]


def test_a_signed_tree_head_verifies_with_the_public_key_and_no_other() -> None:
    head = domain_signing.TreeHead(42, bytes(range(32)), NOW)
    signed = domain_signing.sign(head, KEY)
    again = domain_signing.SignedTreeHead.from_json(json.loads(json.dumps(signed.to_json())))

    assert domain_signing.signature_valid(again, KEY.public_key())
    assert not domain_signing.signature_valid(again, Ed25519PrivateKey.generate().public_key())
    other_size = replace(again, head=replace(again.head, tree_size=43))
    assert not domain_signing.signature_valid(other_size, KEY.public_key())


def test_keys_load_from_pem_or_a_base64_seed_and_anything_else_is_refused() -> None:
    pem = domain_signing.private_key_pem(KEY)
    public = domain_signing.public_key_pem(KEY.public_key())

    assert domain_signing.key_id(domain_signing.load_private_key(pem).public_key()) == (
        domain_signing.key_id(domain_signing.load_public_key(public))
    )
    assert domain_signing.load_private_key(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    with pytest.raises(domain_signing.SigningKeyInvalid):
        domain_signing.load_private_key(b"not a key")
    with pytest.raises(domain_signing.SigningKeyInvalid):
        domain_signing.load_public_key(pem)


def bundle_of(count: int, export_format: domain_bundle.Format) -> bytes:
    records = stored(count)
    appended = merkle.append(merkle.Frontier(), [merkle.leaf_hash(r.leaf) for r in records])
    nodes = {(level, index): h for level, index, h in appended.nodes}
    exported = [
        domain_bundle.ExportedRecord(
            r.seq, r.leaf, merkle.hashes_of(merkle.inclusion_ranges(r.seq - 1, count), nodes)
        )
        for r in records
    ]
    head = domain_signing.sign(domain_signing.TreeHead(count, appended.frontier.root(), NOW), KEY)
    return domain_bundle.build_bundle(
        exported, signed_head=head, export_format=export_format, filters={}, next_cursor=None
    )


def rewrite(bundle: bytes, name: str, change: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            target.writestr(item, change if item == name else source.read(item))
    return out.getvalue()


@pytest.mark.parametrize("export_format", ["jsonl", "csv"])
def test_a_bundle_verifies_and_a_changed_record_is_named(
    export_format: domain_bundle.Format,
) -> None:
    bundle = bundle_of(7, export_format)
    assert domain_bundle.check_bundle(bundle, KEY.public_key()).valid

    name = domain_bundle.RECORDS[export_format]
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        body = archive.read(name)
    lines = body.split(b"\n")
    target = 3 if export_format == "csv" else 2  # the CSV has a header line
    lines[target] = lines[target].replace(b"ACC-001", b"ACC-002", 1)
    outcome = domain_bundle.check_bundle(rewrite(bundle, name, b"\n".join(lines)), KEY.public_key())

    assert not outcome.valid
    assert outcome.first_invalid_seq == 3


def test_a_csv_column_that_disagrees_with_its_leaf_is_named() -> None:
    bundle = bundle_of(4, "csv")
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        lines = archive.read("records.csv").split(b"\n")
    lines[2] = lines[2].replace(b",key:fo,", b",key:someone,", 1)
    outcome = domain_bundle.check_bundle(
        rewrite(bundle, "records.csv", b"\n".join(lines)), KEY.public_key()
    )

    assert (outcome.valid, outcome.first_invalid_seq) == (False, 2)
    assert outcome.reason is not None and "actor" in outcome.reason


def test_a_bundle_under_another_key_or_with_a_record_left_out_is_refused() -> None:
    bundle = bundle_of(5, "jsonl")
    assert not domain_bundle.check_bundle(bundle, Ed25519PrivateKey.generate().public_key()).valid
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        lines = archive.read("records.jsonl").split(b"\n")
    outcome = domain_bundle.check_bundle(
        rewrite(bundle, "records.jsonl", b"\n".join(lines[1:])), KEY.public_key()
    )
    assert not outcome.valid
    assert domain_bundle.check_bundle(b"not a zip", KEY.public_key()).reason is not None


def test_a_proof_document_verifies_and_a_changed_leaf_does_not() -> None:
    records = stored(6)
    appended = merkle.append(merkle.Frontier(), [merkle.leaf_hash(r.leaf) for r in records])
    nodes = {(level, index): h for level, index, h in appended.nodes}
    head = domain_signing.sign(domain_signing.TreeHead(6, appended.frontier.root(), NOW), KEY)
    document = domain_bundle.proof_document(
        seq=4, leaf=records[3].leaf, proof=merkle.hashes_of(merkle.inclusion_ranges(3, 6), nodes),
        signed_head=head,
    )  # fmt: skip

    assert domain_bundle.check_proof(document, KEY.public_key()).valid
    changed = {**document, "leaf": document["leaf"].replace("ACC-001", "ACC-009")}
    assert domain_bundle.check_proof(changed, KEY.public_key()).first_invalid_seq == 4
    assert not domain_bundle.check_proof({"seq": 4}, KEY.public_key()).valid


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(
    event=st.dictionaries(st.text(), json_values, max_size=6),
    seq=st.integers(1, 2**62),
    topic=st.none() | st.text(),
    partition=st.none() | st.integers(0, 2**31),
    offset=st.none() | st.integers(0, 2**62),
    received_at=st.datetimes(timezones=st.just(UTC)),
)
def test_a_record_document_spliced_from_its_events_json_is_the_canonical_document(
    event: dict[str, Any],
    seq: int,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    received_at: datetime,
) -> None:
    """The leaf bytes every proof depends on: the spliced document is byte for byte the
    canonical JSON of the whole document."""
    where = {"seq": seq, "topic": topic, "partition": partition, "offset": offset}
    whole = domain.canonical_json({**where, "received_at": received_at.isoformat(), "event": event})
    spliced = domain.record_document(
        **where, received_at=received_at, event_json=domain.canonical_json(event)
    )
    assert spliced == whole
    assert domain.record_document(**where, received_at=received_at, event=event) == whole
