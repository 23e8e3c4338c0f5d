"""Ledger use cases: book a trade's pending entry on capture, reverse and rebook it on
amendment, reverse it on cancellation, and book its settled entry on settlement.

Pending and settled entries are independent, so capture and settlement may arrive in either
order. The events of one trade on trade.events arrive in order (they are keyed by account),
and each handler also copes with a late or repeated one: what the journal already holds for
the trade (`domain.Book`) decides what, if anything, is booked. The handlers of one trade are
serialised by a transaction-level advisory lock, so two replicas (one reading trade.events,
one settlement.events) cannot both book from the same stale view.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import ledger as contract
from bo_common.contracts import settlement as settlement_contract
from bo_common.envelope import Envelope, new_event
from bo_common.logs import get_logger
from bo_common.topics import LEDGER_EVENTS
from bo_common.unit_of_work import UnitOfWork
from ledger import domain
from ledger.tables import CancellationRow, EntryRow, LineRow

log = get_logger(__name__)


def _terms(trade: gateway_contract.TradeCaptured) -> domain.TradeTerms:
    return domain.TradeTerms(
        trade_id=trade.trade_id,
        account=trade.account,
        side=trade.side,
        isin=trade.isin,
        quantity=trade.quantity,
        amount=trade.gross_amount if trade.settlement_type == "DVP" else trade.gross_amount * 0,
        currency=trade.currency,
        counterparty_lei=trade.counterparty_lei,
    )


async def post_trade_capture(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeCaptured.model_validate(event.data)
    book = await _book(uow, trade.trade_id)
    decision = domain.book_capture(book, _terms(trade), version=trade.version)
    await _apply(uow, decision, event, trade.trade_id, change="capture", version=trade.version)


async def post_trade_amendment(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeAmended.model_validate(event.data)
    book = await _book(uow, trade.trade_id)
    decision = domain.book_amendment(book, _terms(trade), version=trade.version)
    await _apply(uow, decision, event, trade.trade_id, change="amend", version=trade.version)


async def post_trade_cancellation(event: Envelope, uow: UnitOfWork) -> None:
    cancelled = gateway_contract.TradeCancelled.model_validate(event.data)
    book = await _book(uow, cancelled.trade_id)
    decision = domain.book_cancellation(book)
    await _apply(
        uow, decision, event, cancelled.trade_id, change="cancel", version=cancelled.version
    )
    if decision.record_cancellation:
        await uow.session.execute(
            insert(CancellationRow)
            .values(
                trade_id=cancelled.trade_id,
                account=cancelled.account,
                version=cancelled.version,
                reason=cancelled.reason,
                event_id=str(event.id),
                recorded_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )


async def post_settlement(event: Envelope, uow: UnitOfWork) -> None:
    settled = settlement_contract.SettlementSettled.model_validate(event.data)
    terms = domain.TradeTerms(
        trade_id=settled.trade_id,
        account=settled.account,
        side=settled.side,
        isin=settled.isin,
        quantity=settled.quantity,
        amount=settled.amount,
        currency=settled.currency,
        counterparty_lei=settled.counterparty_lei,
    )
    book = await _book(uow, settled.trade_id)
    decision = domain.book_settlement(
        book, terms, settled_entry_id=domain.settled_entry_id(settled.trade_id)
    )
    if len(decision.entries) > 1:
        # A change the ledger booked that settlement refused (it reached settlement after
        # the instruction): the books follow what the depository settled.
        log.warning(
            "ledger_rebooked_as_settled",
            trade_id=settled.trade_id,
            booked_version=book.booked_version,
            cancelled=book.cancelled,
        )
    await _apply(
        uow, decision, event, settled.trade_id, change="settle", version=book.booked_version or 1
    )


async def _book(uow: UnitOfWork, trade_id: str) -> domain.Book:
    """What the journal holds for the trade, read under the trade's lock."""
    session = uow.session
    await session.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"ledger:{trade_id}", 0)))
    )
    cancelled = (
        await session.scalar(
            sa.select(sa.literal(True)).where(CancellationRow.trade_id == trade_id)
        )
    ) is not None
    rows = (
        (await session.execute(sa.select(EntryRow).where(EntryRow.trade_id == trade_id)))
        .scalars()
        .all()
    )
    if not rows:
        return domain.Book(cancelled=cancelled)
    lines = (
        (
            await session.execute(
                sa.select(LineRow)
                .where(LineRow.entry_id.in_([row.entry_id for row in rows]))
                .order_by(LineRow.entry_id, LineRow.line_no)
            )
        )
        .scalars()
        .all()
    )
    by_entry: dict[str, list[domain.Line]] = {}
    for line in lines:
        by_entry.setdefault(line.entry_id, []).append(
            domain.Line(line.ledger_account, line.unit, debit=line.debit, credit=line.credit)
        )
    return domain.Book.of(
        (
            domain.Entry(
                entry_id=row.entry_id,
                trade_id=row.trade_id,
                account=row.account,
                kind=row.kind,
                lines=tuple(by_entry.get(row.entry_id, ())),
                version=row.version,
                reverses=row.reverses,
            )
            for row in rows
        ),
        cancelled=cancelled,
    )


async def _apply(
    uow: UnitOfWork,
    decision: domain.Decision,
    event: Envelope,
    trade_id: str,
    *,
    change: str,
    version: int,
) -> None:
    if decision.skipped is not None:
        if decision.refused:
            # Settlement refuses such a change too (settlement.change_refused).
            log.warning(
                "ledger_change_not_booked",
                trade_id=trade_id,
                change=change,
                version=version,
                reason=decision.skipped,
            )
        else:
            log.info(
                "ledger_nothing_to_book",
                trade_id=trade_id,
                change=change,
                version=version,
                reason=decision.skipped,
            )
        return
    for entry in decision.entries:
        await _post(uow, entry, event)


async def _post(uow: UnitOfWork, entry: domain.Entry, cause: Envelope) -> None:
    now = datetime.now(UTC)
    inserted = await uow.session.scalar(
        insert(EntryRow)
        .values(
            entry_id=entry.entry_id,
            trade_id=entry.trade_id,
            account=entry.account,
            kind=entry.kind,
            event_id=str(cause.id),
            posted_at=now,
            version=entry.version,
            reverses=entry.reverses,
        )
        .on_conflict_do_nothing()
        .returning(EntryRow.entry_id)
    )
    if inserted is None:
        return  # this entry is booked already
    await uow.session.execute(
        insert(LineRow),
        [
            {
                "entry_id": entry.entry_id,
                "line_no": number,
                "ledger_account": line.ledger_account,
                "unit": line.unit,
                "debit": line.debit,
                "credit": line.credit,
            }
            for number, line in enumerate(entry.lines, start=1)
        ],
    )
    uow.outbox.put(
        new_event(
            type=contract.POSTED,
            source="ledger",
            subject=entry.trade_id,
            cause=cause,
            actor="service:ledger",
            time=now,
            data=contract.LedgerPosted(
                entry_id=entry.entry_id,
                trade_id=entry.trade_id,
                account=entry.account,
                kind=entry.kind,
                lines=[
                    contract.PostedLine(
                        ledger_account=line.ledger_account,
                        unit=line.unit,
                        debit=line.debit,
                        credit=line.credit,
                    )
                    for line in entry.lines
                ],
                reverses=entry.reverses,
                version=entry.version,
            ).model_dump(mode="json"),
        ),
        topic=LEDGER_EVENTS,
        key=entry.account,
    )
