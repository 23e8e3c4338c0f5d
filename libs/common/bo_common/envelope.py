"""The event envelope every message travels in, and its (de)serialisation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Envelope(BaseModel):
    """A fact that happened, in the spirit of CloudEvents (see docs/events.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    type: str = Field(min_length=3, pattern=r"^[a-z_]+\.[a-z_]+$")
    version: int = Field(ge=1)
    source: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    time: datetime
    correlation_id: str = Field(min_length=1)
    causation_id: uuid.UUID | None = None
    actor: str = Field(min_length=1)
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _time_is_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("time must carry a UTC offset")
        return value.astimezone(UTC)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


def new_event(
    *,
    type: str,
    source: str,
    subject: str,
    data: dict[str, Any],
    actor: str,
    correlation_id: str | None = None,
    cause: Envelope | None = None,
    version: int = 1,
    event_id: uuid.UUID | None = None,
    time: datetime | None = None,
) -> Envelope:
    """Build an envelope; a caused event inherits its cause's correlation id."""
    if correlation_id is None:
        correlation_id = cause.correlation_id if cause is not None else subject
    return Envelope(
        id=event_id or uuid.uuid4(),
        type=type,
        version=version,
        source=source,
        subject=subject,
        time=time or datetime.now(UTC),
        correlation_id=correlation_id,
        causation_id=cause.id if cause is not None else None,
        actor=actor,
        data=data,
    )
