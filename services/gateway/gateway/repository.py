"""Named queries of the gateway."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain import Trade
from gateway.tables import DeskAccountRow, TimelineRow, TradeRow


async def desk_of_account(session: AsyncSession, account: str) -> str | None:
    desk: str | None = await session.scalar(
        sa.select(DeskAccountRow.desk).where(DeskAccountRow.account == account)
    )
    return desk


async def insert_trade(
    session: AsyncSession, trade: Trade, request: dict[str, object]
) -> TradeRow | None:
    """Insert unless the client already sent this client_trade_id; the row if inserted."""
    values = {
        "trade_id": trade.trade_id,
        "client": trade.client,
        "client_trade_id": trade.client_trade_id,
        "account": trade.account,
        "desk": trade.desk,
        "side": trade.side,
        "isin": trade.isin,
        "quantity": trade.quantity,
        "price": trade.price,
        "currency": trade.currency,
        "trade_date": trade.trade_date,
        "trade_time": trade.trade_time,
        "venue": trade.venue,
        "counterparty_lei": trade.counterparty_lei,
        "settlement_type": trade.settlement_type,
        "request": request,
        "request_hash": trade.request_hash,
        "received_at": trade.received_at,
        "state": "captured",
        "state_rank": 10,
        "state_changed_at": trade.received_at,
    }
    inserted = await session.scalar(
        insert(TradeRow)
        .values(values)
        .on_conflict_do_nothing(index_elements=["client", "client_trade_id"])
        .returning(TradeRow.trade_id)
    )
    return TradeRow(**values) if inserted is not None else None


async def trade_by_client_id(
    session: AsyncSession, client: str, client_trade_id: str
) -> TradeRow | None:
    return (
        await session.execute(
            sa.select(TradeRow).where(
                TradeRow.client == client, TradeRow.client_trade_id == client_trade_id
            )
        )
    ).scalar_one_or_none()


async def get_trade(session: AsyncSession, trade_id: str) -> TradeRow | None:
    return await session.get(TradeRow, trade_id)


async def find_trades(
    session: AsyncSession,
    *,
    client_trade_id: str | None,
    accounts: list[str] | None,
    limit: int,
) -> list[TradeRow]:
    query = sa.select(TradeRow).order_by(TradeRow.received_at.desc()).limit(limit)
    if client_trade_id is not None:
        query = query.where(TradeRow.client_trade_id == client_trade_id)
    if accounts is not None:
        query = query.where(TradeRow.account.in_(accounts))
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


async def record_timeline(
    session: AsyncSession,
    *,
    event_id: object,
    trade_id: str,
    event_type: str,
    source: str,
    occurred_at: datetime,
    data: dict[str, object],
) -> None:
    await session.execute(
        insert(TimelineRow)
        .values(
            event_id=event_id,
            trade_id=trade_id,
            event_type=event_type,
            source=source,
            occurred_at=occurred_at,
            data=data,
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )


async def raise_state(
    session: AsyncSession, *, trade_id: str, state: str, rank: int, at: datetime
) -> None:
    await session.execute(
        sa.update(TradeRow)
        .where(TradeRow.trade_id == trade_id, TradeRow.state_rank < rank)
        .values(state=state, state_rank=rank, state_changed_at=at)
    )
