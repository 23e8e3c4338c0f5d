"""Named queries of the gateway."""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bo_common.outbox import Outbox
from gateway.tables import (
    ClientLimitRow,
    DeskAccountRow,
    TimelineRow,
    TradeRow,
    TradeVersionRow,
)

TIMELINE = cast(sa.Table, TimelineRow.__table__)


async def desk_of_account(session: AsyncSession, account: str) -> str | None:
    desk: str | None = await session.scalar(
        sa.select(DeskAccountRow.desk).where(DeskAccountRow.account == account)
    )
    return desk


# An account never moves to another desk (`bo desks create` refuses it), so a desk once
# read stays right; only unknown accounts are asked again (a new account works at once).
_DESK_OF_ACCOUNT: dict[str, str] = {}


async def desks_of_accounts(session: AsyncSession, accounts: list[str]) -> dict[str, str]:
    found = {a: _DESK_OF_ACCOUNT[a] for a in accounts if a in _DESK_OF_ACCOUNT}
    missing = [a for a in accounts if a not in found]
    if missing:
        rows = await session.execute(
            sa.select(DeskAccountRow.account, DeskAccountRow.desk).where(
                DeskAccountRow.account.in_(missing)
            )
        )
        for account, desk in rows.tuples():
            found[account] = desk
            if len(_DESK_OF_ACCOUNT) < 1_000_000:
                _DESK_OF_ACCOUNT[account] = desk
    return found


async def capture(
    session: AsyncSession, rows: list[dict[str, Any]], events: list[dict[str, Any]]
) -> set[str]:
    """Insert the trades unless their client already sent the client_trade_id, and the
    events (outbox rows, each with the `trade_id` it is of) of those inserted; the trade_ids
    inserted. A concurrent insert of the same key waits for the other transaction.

    The events' ids are new (uuid4) and only a trade inserted here has its event queued, so
    the outbox insert needs no ON CONFLICT (which made each row a speculative insertion,
    with a second WAL record to confirm it).

    One statement, so it is atomic on its own: on a connection in autocommit a single
    trade costs one round trip, where BEGIN, the two inserts and COMMIT were four, each a
    wake-up of the API and of its server process on a CPU shared with the workers."""
    if not rows:
        return set()
    columns = tuple(c for c in events[0] if c != "trade_id")
    result = await session.execute(
        _capture_statement(tuple(rows[0]), columns),
        {
            "trades": json.dumps(rows, default=str),
            "events": json.dumps(
                [
                    {**e, "n": n, "payload": "\\x" + e["payload"].hex()}
                    for n, e in enumerate(events)
                ],
                default=str,
            ),
        },
    )
    return set(result.scalars())


@functools.cache
def _capture_statement(
    trade_columns: tuple[str, ...], event_columns: tuple[str, ...]
) -> sa.TextClause:
    # Only known names make it into the statement's text.
    unknown = {*trade_columns} - {*TradeRow.__table__.c.keys()}
    unknown |= {*event_columns} - {*_EVENT_TYPES}
    if unknown:
        raise ValueError(f"not columns of trades or outbox: {sorted(unknown)}")
    trades = ", ".join(trade_columns)
    events = ", ".join(event_columns)
    record = ", ".join(f"{name} {_EVENT_TYPES[name]}" for name in ("n", "trade_id", *event_columns))
    return sa.text(
        f"""
        WITH inserted AS (
            INSERT INTO trades ({trades})
            SELECT {trades} FROM jsonb_populate_recordset(NULL::trades, CAST(:trades AS jsonb))
            ON CONFLICT (client, client_trade_id) DO NOTHING
            RETURNING trade_id
        ), queued AS (
            INSERT INTO outbox ({events})
            SELECT {events} FROM jsonb_to_recordset(CAST(:events AS jsonb)) AS e({record})
            WHERE e.trade_id IN (SELECT trade_id FROM inserted)
            ORDER BY e.n
        )
        SELECT trade_id FROM inserted
        """
    ).columns(sa.column("trade_id", sa.Text))


_EVENT_TYPES = {
    "n": "integer",
    "trade_id": "text",
    "event_id": "uuid",
    "event_type": "text",
    "topic": "text",
    "key": "text",
    "payload": "bytea",
    "traceparent": "text",
    "correlation_id": "text",
}


async def trades_by_client_ids(
    session: AsyncSession, client: str, client_trade_ids: list[str]
) -> dict[str, TradeRow]:
    rows = await session.execute(
        sa.select(TradeRow).where(
            TradeRow.client == client, TradeRow.client_trade_id.in_(client_trade_ids)
        )
    )
    return {row.client_trade_id: row for row in rows.scalars()}


async def client_limit(session: AsyncSession, client: str) -> tuple[float, int] | None:
    row = await session.get(ClientLimitRow, client)
    return (float(row.requests_per_second), row.burst) if row is not None else None


async def lock_trade(session: AsyncSession, trade_id: str) -> TradeRow | None:
    return (
        await session.execute(
            sa.select(TradeRow).where(TradeRow.trade_id == trade_id).with_for_update()
        )
    ).scalar_one_or_none()


def add_version(session: AsyncSession, row: TradeVersionRow) -> None:
    session.add(row)


async def get_trade(session: AsyncSession, trade_id: str) -> TradeRow | None:
    return await session.get(TradeRow, trade_id)


async def find_trades(
    session: AsyncSession,
    *,
    accounts: list[str] | None,
    client_trade_id: str | None = None,
    account: str | None = None,
    state: str | None = None,
    trade_date: date | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int,
) -> list[TradeRow]:
    """Newest first, keyset-paged on (received_at, trade_id) after the cursor `after`."""
    query = (
        sa.select(TradeRow)
        .order_by(TradeRow.received_at.desc(), TradeRow.trade_id.desc())
        .limit(limit)
    )
    if accounts is not None:
        query = query.where(TradeRow.account.in_(accounts))
    if client_trade_id is not None:
        query = query.where(TradeRow.client_trade_id == client_trade_id)
    if account is not None:
        query = query.where(TradeRow.account == account)
    if state is not None:
        query = query.where(TradeRow.state == state)
    if trade_date is not None:
        query = query.where(TradeRow.trade_date == trade_date)
    if after is not None:
        query = query.where(sa.tuple_(TradeRow.received_at, TradeRow.trade_id) < sa.tuple_(*after))
    return list((await session.execute(query)).scalars())


async def accounts_of_desk(session: AsyncSession, desk: str | None) -> list[str]:
    if desk is None:
        return []
    return list(
        (
            await session.execute(
                sa.select(DeskAccountRow.account).where(DeskAccountRow.desk == desk)
            )
        ).scalars()
    )


async def timeline(session: AsyncSession, trade_id: str) -> list[TimelineRow]:
    return list(
        (
            await session.execute(
                sa.select(TimelineRow)
                .where(TimelineRow.trade_id == trade_id)
                .order_by(TimelineRow.occurred_at, TimelineRow.recorded_at)
            )
        ).scalars()
    )


def record_timeline(
    outbox: Outbox,
    *,
    event_id: uuid.UUID,
    trade_id: str,
    event_type: str,
    source: str,
    occurred_at: datetime,
    data: dict[str, object],
) -> None:
    """Queued in the unit of work: a consumed batch's entries go in one insert when the
    batch flushes (the inbox has made sure each event comes once)."""
    outbox.insert_later(
        TIMELINE,
        {
            "event_id": event_id,
            "trade_id": trade_id,
            "event_type": event_type,
            "source": source,
            "occurred_at": occurred_at,
            "data": data,
        },
    )


@dataclass(frozen=True)
class StateChange:
    """What one event of a trade's chain says of its state (gateway.domain.STATE_OF_EVENT)."""

    trade_id: str
    state: str
    rank: int
    at: datetime
    # The trade version the event is about, if it carries one.
    version: int | None


async def raise_states(session: AsyncSession, changes: list[StateChange]) -> None:
    """Move each trade to the highest-ranked of its changes that outranks its current state
    (the first of equals), which is where applying them in turn leaves it; a change about an
    older version of the trade no longer moves it. One statement for all of them."""
    if not changes:
        return
    # A prepared statement: built once, where an update construct per event cost more
    # client CPU than the database spent on it.
    with session.sync_session.no_autoflush:
        await session.execute(
            _RAISE_STATES,
            {
                "trade_ids": [change.trade_id for change in changes],
                "states": [change.state for change in changes],
                "ranks": [change.rank for change in changes],
                "ats": [change.at for change in changes],
                "versions": [change.version for change in changes],
            },
        )


# The change chosen for each trade is the highest-ranked one that applies to the trade as
# the statement first reads it; the outer WHERE checks it again against the row it updates.
# A row another transaction changed meanwhile (a cancellation or an amendment through the
# API) is re-read when its lock is granted, and only the outer WHERE is evaluated again, so
# the rank and version conditions must be there: a state never moves back, nor to an older
# version's.
_RAISE_STATES = sa.text(
    "UPDATE trades SET state = c.state, state_rank = c.rank, state_changed_at = c.at"
    " FROM (SELECT DISTINCT ON (c.trade_id) c.trade_id, c.state, c.rank, c.at, c.version"
    "  FROM unnest(CAST(:trade_ids AS text[]), CAST(:states AS text[]),"
    "   CAST(:ranks AS integer[]), CAST(:ats AS timestamptz[]), CAST(:versions AS integer[]))"
    "   WITH ORDINALITY AS c(trade_id, state, rank, at, version, n)"
    "  JOIN trades AS t ON t.trade_id = c.trade_id"
    "  WHERE t.state_rank < c.rank AND (c.version IS NULL OR t.version <= c.version)"
    "  ORDER BY c.trade_id, c.rank DESC, c.n) AS c"
    " WHERE trades.trade_id = c.trade_id AND trades.state_rank < c.rank"
    " AND (c.version IS NULL OR trades.version <= c.version)"
)
