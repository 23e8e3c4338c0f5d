"""Database set-up and the tables every service has: outbox, inbox and replicated API keys."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class PlumbingBase(DeclarativeBase):
    pass


class OutboxRow(PlumbingBase):
    """An event to publish (or published), written in the transaction of its state change."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    event_type: Mapped[str] = mapped_column(sa.Text)
    topic: Mapped[str] = mapped_column(sa.Text)
    key: Mapped[str | None] = mapped_column(sa.Text)
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )
    sent_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class InboxRow(PlumbingBase):
    """An event this service has applied; stored in the same transaction as its effect."""

    __tablename__ = "inbox"

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_type: Mapped[str] = mapped_column(sa.Text)
    topic: Mapped[str] = mapped_column(sa.Text)
    applied_at: Mapped[datetime] = mapped_column(
        sa.DateTime(timezone=True), server_default=sa.func.now()
    )


class ApiKeyRow(PlumbingBase):
    """An API key as this service knows it: only the hash, the role and the desk."""

    __tablename__ = "api_keys"

    key_hash: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    key_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    name: Mapped[str] = mapped_column(sa.Text)
    role: Mapped[str] = mapped_column(sa.Text)
    desk: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


OUTBOX_CHANNEL = "bo_outbox"


def drop_outbox_notify() -> None:
    """Revision 2 of every service: the outbox no longer NOTIFYs on insert.

    A transaction that has sent a NOTIFY holds one cluster-wide lock from its commit until
    the commit is flushed to disk, so every notifying commit of every service on the server
    waits for the others' disk flushes: under load that was the intake API's slowest
    requests. The relay polls instead (50 ms by default, and at once after a consumed
    batch of its own process commits)."""
    from alembic import op as alembic_op

    alembic_op.execute("DROP TRIGGER IF EXISTS outbox_notify ON outbox")
    alembic_op.execute("DROP FUNCTION IF EXISTS bo_outbox_notify()")


def restore_outbox_notify() -> None:
    from alembic import op as alembic_op

    alembic_op.execute(
        f"""CREATE FUNCTION bo_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); RETURN NULL; END $$"""
    )
    alembic_op.execute(
        """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
        FOR EACH STATEMENT EXECUTE FUNCTION bo_outbox_notify()"""
    )


def create_plumbing_tables() -> None:
    """Called from each service's first Alembic revision."""
    from alembic import op as alembic_op

    alembic_op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    alembic_op.execute("CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL")
    # One notification per inserting statement wakes the relay as the transaction commits.
    alembic_op.execute(
        f"""CREATE FUNCTION bo_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); RETURN NULL; END $$"""
    )
    alembic_op.execute(
        """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
        FOR EACH STATEMENT EXECUTE FUNCTION bo_outbox_notify()"""
    )
    alembic_op.create_table(
        "inbox",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    alembic_op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.Text, primary_key=True),
        sa.Column("key_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("desk", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )


def drop_plumbing_tables() -> None:
    from alembic import op as alembic_op

    for table in ("api_keys", "inbox", "outbox"):
        alembic_op.drop_table(table)
    alembic_op.execute("DROP FUNCTION bo_outbox_notify()")


def make_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    max_overflow: int | None = None,
    application_name: str | None = None,
) -> AsyncEngine:
    """`max_overflow` (default: as many again as `pool_size`) are opened under a burst and
    closed when returned; the pool keeps `pool_size`. `application_name` is what the
    server shows of these connections (pg_stat_activity, its logs)."""
    # No pre-ping (a round trip on every checkout, on the hot path): a connection the server
    # dropped fails its statement once, SQLAlchemy discards it and the pool reconnects; the
    # API answers that one request 503 with Retry-After and the consume loop retries.
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_recycle=1800,
        connect_args={"server_settings": {"application_name": application_name}}
        if application_name
        else {},
    )


async def open_pool(engine: AsyncEngine, connections: int) -> None:
    """Open `connections` of the pool now rather than on the first requests."""
    async with contextlib.AsyncExitStack() as opened:
        for _ in range(connections):
            await opened.enter_async_context(engine.connect())


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as plain libpq form, for asyncpg connections (LISTEN)."""
    url = sa.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def alembic_config(service_dir: Path, database_url: str) -> Any:
    """The Alembic configuration of a service's database, with its own scripts."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(service_dir / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def run_migrations(service_dir: Path, database_url: str) -> None:
    """Upgrade a service's database to head with its own Alembic scripts."""
    from alembic import command

    # "heads": the plumbing revisions (0100, 0101: bo_common.outbox) are a branch of their
    # own.
    command.upgrade(alembic_config(service_dir, database_url), "heads")
