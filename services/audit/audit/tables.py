"""Audit tables: the records, the Merkle tree's complete subtrees and its head, and the
signed tree heads. Records, nodes and signed heads are append-only (triggers, and the
service's database role may only INSERT and SELECT them)."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RecordRow(Base):
    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    # Where the event was read; all three are null for a record the audit service appended
    # itself (a query of the audit API).
    topic: Mapped[str | None] = mapped_column(sa.Text)
    partition: Mapped[int | None] = mapped_column(sa.Integer)
    offset: Mapped[int | None] = mapped_column(sa.BigInteger)
    event_type: Mapped[str] = mapped_column(sa.Text)
    source: Mapped[str] = mapped_column(sa.Text)
    subject: Mapped[str] = mapped_column(sa.Text)
    correlation_id: Mapped[str] = mapped_column(sa.Text)
    causation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    account: Mapped[str | None] = mapped_column(sa.Text)
    actor: Mapped[str] = mapped_column(sa.Text)
    occurred_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The record's leaf data (domain.record_document): what its leaf hash covers.
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # SHA-256 of the event's canonical JSON: finds the record of a given event.
    payload_hash: Mapped[str | None] = mapped_column(sa.Text)
    # The hash chain of records written before the Merkle tree (revision 0003); null since.
    previous_hash: Mapped[str | None] = mapped_column(sa.Text)
    record_hash: Mapped[str | None] = mapped_column(sa.Text)
    # The trace context the event was delivered with (its record's `traceparent` header), or
    # the one a record the service appended itself was appended in; not in the leaf data.
    traceparent: Mapped[str | None] = mapped_column(sa.Text)


class NodeRow(Base):
    """A complete subtree: 2**level leaves from leaf index * 2**level (level 0: leaf hashes)."""

    __tablename__ = "merkle_nodes"

    level: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    index: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary)


class TreeStateRow(Base):
    """The tree's size and frontier; its row lock serialises appends across replicas."""

    __tablename__ = "merkle_head"

    tree: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    # The frontier's hashes, largest subtree first, 32 bytes each.
    frontier: Mapped[bytes] = mapped_column(sa.LargeBinary)


class SignedHeadRow(Base):
    __tablename__ = "signed_tree_heads"

    tree_size: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    root_hash: Mapped[bytes] = mapped_column(sa.LargeBinary)
    signed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    key_id: Mapped[str] = mapped_column(sa.Text)
    signature: Mapped[bytes] = mapped_column(sa.LargeBinary)
