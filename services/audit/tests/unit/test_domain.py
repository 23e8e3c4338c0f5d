"""The audit hash chain: a chain built with record_hash/payload_hash verifies, and any
change, removal or reordering is found and named. Pure."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.domain import GENESIS_HASH, StoredRecord, payload_hash, record_hash, verify


def build_chain(payloads: list[bytes], *, start_seq: int = 1) -> list[StoredRecord]:
    records, previous = [], GENESIS_HASH
    for seq, payload in enumerate(payloads, start=start_seq):
        digest = payload_hash(payload)
        current = record_hash(seq, digest, previous)
        records.append(StoredRecord(seq, payload, digest, previous, current))
        previous = current
    return records


def chain_of(length: int) -> list[StoredRecord]:
    return build_chain([f'{{"event": {i}}}'.encode() for i in range(length)])


@st.composite
def chain_and_index(draw: st.DrawFn, min_length: int = 1) -> tuple[list[StoredRecord], int]:
    length = draw(st.integers(min_value=min_length, max_value=30))
    return chain_of(length), draw(st.integers(min_value=0, max_value=length - 1))


def other_hash(value: str) -> str:
    return ("1" if value[0] == "0" else "0") + value[1:]


@given(st.lists(st.binary(max_size=64), max_size=30))
def test_a_chain_built_from_its_hashes_verifies(payloads: list[bytes]) -> None:
    outcome = verify(build_chain(payloads))

    assert outcome.valid
    assert outcome.records_checked == len(payloads)
    assert outcome.first_invalid_seq is None
    assert outcome.reason is None


def test_a_chain_continues_from_a_given_start_hash_and_seq() -> None:
    head = chain_of(5)
    tail = head[3:]

    assert verify(tail, start_hash=head[2].record_hash, start_seq=4).valid
    assert not verify(tail).valid


@given(chain_and_index())
def test_altering_a_payload_invalidates_that_record(
    case: tuple[list[StoredRecord], int],
) -> None:
    records, index = case
    records[index] = replace(records[index], payload=records[index].payload + b" ")

    outcome = verify(records)

    assert not outcome.valid
    assert outcome.first_invalid_seq == index + 1
    assert outcome.records_checked == index + 1
    assert outcome.reason == "payload does not match its hash"


@given(chain_and_index(min_length=2).filter(lambda case: case[1] < len(case[0]) - 1))
def test_rewriting_a_payload_with_fresh_hashes_breaks_the_next_record(
    case: tuple[list[StoredRecord], int],
) -> None:
    records, index = case
    forged = build_chain([r.payload for r in records[:index]] + [b"forged"])[index]
    records[index] = forged

    outcome = verify(records)

    assert not outcome.valid
    assert outcome.first_invalid_seq == index + 2
    assert outcome.reason == "previous hash does not chain"


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("payload_hash", "payload does not match its hash"),
        ("previous_hash", "previous hash does not chain"),
        ("record_hash", "record hash is wrong"),
    ],
)
@given(case=chain_and_index())
def test_altering_a_hash_invalidates_that_record(
    field: str, reason: str, case: tuple[list[StoredRecord], int]
) -> None:
    records, index = case
    records[index] = replace(records[index], **{field: other_hash(getattr(records[index], field))})

    outcome = verify(records)

    assert not outcome.valid
    assert outcome.first_invalid_seq == index + 1
    assert outcome.records_checked == index + 1
    assert outcome.reason == reason


# Removing the last record leaves a shorter chain that is still valid: verify alone cannot
# tell a truncated chain from a short one, so only records with a successor are removed.
@given(chain_and_index(min_length=2).filter(lambda case: case[1] < len(case[0]) - 1))
def test_removing_a_record_invalidates_the_chain_where_the_gap_is(
    case: tuple[list[StoredRecord], int],
) -> None:
    records, index = case
    removed = records.pop(index)

    outcome = verify(records)

    assert not outcome.valid
    assert outcome.records_checked == index + 1
    assert outcome.reason == f"expected record {removed.seq}, found {removed.seq + 1}"
    # verify names the seq it found after the gap, not the missing one.
    assert outcome.first_invalid_seq == removed.seq + 1


@st.composite
def chain_and_two_indexes(draw: st.DrawFn) -> tuple[list[StoredRecord], int, int]:
    length = draw(st.integers(min_value=2, max_value=30))
    first = draw(st.integers(min_value=0, max_value=length - 2))
    second = draw(st.integers(min_value=first + 1, max_value=length - 1))
    return chain_of(length), first, second


@given(chain_and_two_indexes())
def test_swapping_two_records_invalidates_the_chain_at_the_first_swapped_place(
    case: tuple[list[StoredRecord], int, int],
) -> None:
    records, first, second = case
    records[first], records[second] = records[second], records[first]

    outcome = verify(records)

    assert not outcome.valid
    assert outcome.records_checked == first + 1
    assert outcome.reason == f"expected record {first + 1}, found {second + 1}"
    # verify names the seq it found in the first swapped place.
    assert outcome.first_invalid_seq == second + 1


@given(chain_and_two_indexes())
def test_swapping_two_records_contents_under_their_seqs_invalidates_the_first(
    case: tuple[list[StoredRecord], int, int],
) -> None:
    # What a swap looks like in a table read back ordered by seq: the seqs stay in order,
    # everything else trades places.
    records, first, second = case
    a, b = records[first], records[second]
    records[first], records[second] = replace(b, seq=a.seq), replace(a, seq=b.seq)

    outcome = verify(records)

    assert not outcome.valid
    assert outcome.first_invalid_seq == first + 1
    assert outcome.records_checked == first + 1
