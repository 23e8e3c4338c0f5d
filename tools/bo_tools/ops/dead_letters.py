"""`bo dlq list|show|replay`: the dead letters on the `<topic>.dlq` topics, and their replay.

A dead letter's id is the id its consumer gave its outbox row (bo_common.consumer): a uuid5
of the consumer group, topic, partition and offset, so a dead letter published twice (a relay
crash, `bo outbox republish`) is listed once.

Replay re-publishes the original message (or a corrected value) to its topic with the same
key, so it lands in the same partition and order as the original. Why that applies it once:
the consumer records an event id in its inbox only in the savepoint that applied it, and
that savepoint was rolled back when the message was dead-lettered, so the replayed id is
new to the consumer that failed and is applied; a consumer that had applied it skips it.
A replay is recorded as an `ops.dead_letter_replayed` event on ops.events (so the audit
trail has it); a dead letter already replayed is not replayed again unless forced, and even
then the inboxes skip what was applied.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bo_common.contracts.ops import (
    DEAD_LETTER_REPLAYED,
    DEAD_LETTER_REPLAYED_VERSION,
    DeadLetterReplayed,
)
from bo_common.envelope import Envelope, new_event
from bo_common.kafka import start_producer
from bo_common.settings import KafkaSettings
from bo_common.topics import ALL_TOPICS, OPS_EVENTS, dead_letter_topic
from bo_tools.ops.config import OpsConfig

REPLAY_HEADER = "bo-replay-of"


class DeadLetterError(Exception):
    """The dead letter asked for does not exist, is ambiguous, or its correction is invalid."""


@dataclass(frozen=True)
class DeadLetter:
    id: str
    topic: str
    partition: int
    offset: int
    key: str | None
    consumer: str
    error: str
    attempts: int
    failed_at: str
    value: bytes
    # Where the dead letter itself is (the first copy, if published more than once).
    dlq_partition: int
    dlq_offset: int
    replays: list[dict[str, Any]] = field(default_factory=list)

    @property
    def event_id(self) -> str | None:
        try:
            return str(Envelope.from_bytes(self.value).id)
        except ValueError:
            return None

    @property
    def status(self) -> str:
        return "replayed" if self.replays else "open"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "consumer": self.consumer,
            "error": self.error,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
            "event_id": self.event_id,
        }

    def detail(self) -> dict[str, Any]:
        body = self.summary()
        body["key"] = self.key
        try:
            body["value"] = self.value.decode("utf-8")
        except UnicodeDecodeError:
            body["value_base64"] = base64.b64encode(self.value).decode("ascii")
        body["replays"] = self.replays
        return body


def dead_letter_id(consumer: str, topic: str, partition: int, offset: int) -> str:
    """The same id bo_common.consumer gives the dead letter's outbox row."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dlq:{consumer}:{topic}:{partition}:{offset}"))


async def _read_all(bootstrap: str, topics: list[str]) -> list[Any]:
    """Every record of these topics, from the beginning to the high-water mark seen."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    topics = [t for t in topics if t in existing]
    if not topics:
        return []
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        client_id=f"bo-dlq-{uuid.uuid4().hex[:8]}",
    )
    await reader.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(reader.partitions_for_topic(t) or [])
        ]
        if not partitions:
            return []
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        records: list[Any] = []
        # End offsets from the broker can be short on Tansu (docs/broker.md): read until
        # every partition's fetch answer says we are at its high-water mark, then stop.
        done: set[TopicPartition] = set()
        quiet_rounds = 0
        deadline = time.monotonic() + 60
        while len(done) < len(partitions) and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=300, max_records=5000)
            for records_of in batches.values():
                records += records_of
            for tp in partitions:
                highwater = reader.highwater(tp)
                if highwater is not None and await reader.position(tp) >= highwater:
                    done.add(tp)
            quiet_rounds = 0 if batches else quiet_rounds + 1
            if quiet_rounds >= 5:  # partitions never written to get no fetch answer
                break
        return records
    finally:
        await reader.stop()


async def read_dead_letters(
    config: OpsConfig, *, topics: list[str] | None = None
) -> list[DeadLetter]:
    sources = topics or list(ALL_TOPICS)
    records = await _read_all(
        config.bootstrap_servers, [dead_letter_topic(t) for t in sources] + [OPS_EVENTS]
    )
    replays: dict[str, list[dict[str, Any]]] = {}
    letters: dict[str, DeadLetter] = {}
    for record in records:
        if record.topic == OPS_EVENTS:
            try:
                event = Envelope.from_bytes(record.value or b"")
            except ValueError:
                continue
            if event.type == DEAD_LETTER_REPLAYED:
                replays.setdefault(str(event.data.get("dead_letter_id")), []).append(
                    {"at": event.time.isoformat(), **event.data}
                )
            continue
        try:
            body = json.loads(record.value or b"")
            value = (
                body["value"].encode("utf-8")
                if "value" in body
                else base64.b64decode(body.get("value_base64", ""))
            )
            letter_id = dead_letter_id(
                body["consumer"], body["topic"], int(body["partition"]), int(body["offset"])
            )
        except (ValueError, KeyError, TypeError):
            continue  # not a dead letter of ours
        if letter_id in letters:
            continue
        letters[letter_id] = DeadLetter(
            id=letter_id,
            topic=body["topic"],
            partition=int(body["partition"]),
            offset=int(body["offset"]),
            key=body.get("key"),
            consumer=body["consumer"],
            error=str(body.get("error", "")),
            attempts=int(body.get("attempts", 0)),
            failed_at=str(body.get("failed_at", "")),
            value=value,
            dlq_partition=record.partition,
            dlq_offset=record.offset,
        )
    for letter_id, letter in letters.items():
        letter.replays.extend(replays.get(letter_id, []))
    return sorted(letters.values(), key=lambda d: (d.failed_at, d.id))


def find(letters: list[DeadLetter], wanted: str) -> DeadLetter:
    """By id or a unique prefix of it (as git does for commits)."""
    matches = [d for d in letters if d.id == wanted] or [
        d for d in letters if d.id.startswith(wanted)
    ]
    if not matches:
        raise DeadLetterError(f"no dead letter {wanted}")
    if len(matches) > 1:
        raise DeadLetterError(f"{wanted} matches {len(matches)} dead letters: give more of it")
    return matches[0]


def check_correction(letter: DeadLetter, corrected: bytes) -> None:
    """A correction of an event must keep its id: consumers that applied the original skip
    it by that id; a new id would be applied a second time by them."""
    original = letter.event_id
    if original is None:
        return
    try:
        fixed = Envelope.from_bytes(corrected)
    except ValueError as error:
        raise DeadLetterError(f"the corrected value is not a valid envelope: {error}") from error
    if str(fixed.id) != original:
        raise DeadLetterError(
            f"the corrected event must keep the original id {original} (it has {fixed.id})"
        )


async def replay(
    config: OpsConfig,
    letter: DeadLetter,
    *,
    corrected: bytes | None = None,
    force: bool = False,
    actor: str = "bo dlq replay",
) -> dict[str, Any]:
    if letter.replays and not force:
        return {
            "id": letter.id,
            "replayed": False,
            "reason": "already replayed",
            **letter.summary(),
        }
    if corrected is not None:
        check_correction(letter, corrected)
    value = corrected if corrected is not None else letter.value
    producer = await start_producer(
        KafkaSettings(bootstrap_servers=config.bootstrap_servers), client_id="bo-dlq-replay"
    )
    try:
        sent = await producer.send_and_wait(
            letter.topic,
            value,
            key=letter.key.encode("utf-8") if letter.key is not None else None,
            headers=[(REPLAY_HEADER, letter.id.encode("ascii"))],
        )
        data = DeadLetterReplayed(
            dead_letter_id=letter.id,
            topic=letter.topic,
            partition=letter.partition,
            offset=letter.offset,
            consumer=letter.consumer,
            corrected=corrected is not None,
            replayed_to_partition=sent.partition,
            replayed_to_offset=sent.offset,
        )
        event = new_event(
            type=DEAD_LETTER_REPLAYED,
            version=DEAD_LETTER_REPLAYED_VERSION,
            source="ops",
            subject=f"dead_letter:{letter.id}",
            correlation_id=_correlation_of(letter),
            actor=actor,
            data=data.model_dump(mode="json"),
        )
        await producer.send_and_wait(OPS_EVENTS, event.to_bytes(), key=letter.id.encode())
    finally:
        await producer.stop()
    return {
        "id": letter.id,
        "replayed": True,
        "topic": letter.topic,
        "partition": sent.partition,
        "offset": sent.offset,
        "corrected": corrected is not None,
    }


def _correlation_of(letter: DeadLetter) -> str:
    """The trade the dead message was about, if it was an envelope; else the dead letter."""
    try:
        return str(Envelope.from_bytes(letter.value).correlation_id)
    except ValueError:
        return f"dead_letter:{letter.id}"
