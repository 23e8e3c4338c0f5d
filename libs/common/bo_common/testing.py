"""A consumed record as the consume loop gets it from aiokafka, for the tests of the loop
and of every service's handlers (no broker)."""

from __future__ import annotations

from aiokafka import ConsumerRecord


def consumed(
    value: bytes,
    *,
    offset: int,
    topic: str = "trade.events",
    partition: int = 0,
    headers: list[tuple[str, bytes]] | None = None,
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=headers or [],
    )
