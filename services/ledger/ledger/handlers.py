"""Ledger use cases: book a trade's pending entry on capture and its settled entry on
settlement. The two are independent entries, so they may arrive in either order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.dialects.postgresql import insert

from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import ledger as contract
from bo_common.contracts import settlement as settlement_contract
from bo_common.envelope import Envelope, new_event
from bo_common.topics import LEDGER_EVENTS
from bo_common.unit_of_work import UnitOfWork
from ledger import domain
from ledger.tables import EntryRow, LineRow


async def post_trade_capture(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeCaptured.model_validate(event.data)
    terms = domain.TradeTerms(
        trade_id=trade.trade_id,
        account=trade.account,
        side=trade.side,
        isin=trade.isin,
        quantity=trade.quantity,
        amount=trade.gross_amount if trade.settlement_type == "DVP" else trade.gross_amount * 0,
        currency=trade.currency,
        counterparty_lei=trade.counterparty_lei,
    )
    await _post(
        uow, domain.pending_entry(terms, entry_id=_entry_id(trade.trade_id, "pending")), event
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
    await _post(
        uow, domain.settled_entry(terms, entry_id=_entry_id(settled.trade_id, "settled")), event
    )


def _entry_id(trade_id: str, kind: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"entry:{trade_id}:{kind}"))


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
        )
        .on_conflict_do_nothing()
        .returning(EntryRow.entry_id)
    )
    if inserted is None:
        return  # this trade's entry of this kind is booked already
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
            ).model_dump(mode="json"),
        ),
        topic=LEDGER_EVENTS,
        key=entry.account,
    )
