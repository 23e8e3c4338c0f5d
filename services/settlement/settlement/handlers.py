"""Settlement use cases: trade captured → obligation; compliance and SSIs release it to an
instruction; the depository's status moves it to matched, settled or failed."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from bo_common.contracts import compliance as compliance_contract
from bo_common.contracts import csd as csd_contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import settlement as contract
from bo_common.envelope import Envelope, new_event
from bo_common.topics import CSD_INSTRUCTIONS, SETTLEMENT_EVENTS
from bo_common.unit_of_work import UnitOfWork
from settlement import domain
from settlement.calendars import business_days
from settlement.markets import MARKETS
from settlement.tables import ComplianceDecisionRow, InstructionRow, ObligationRow, SsiRow

ACTOR = "service:settlement"

COMPLIANCE_DECISION = {
    compliance_contract.TRADE_CLEARED: "cleared",
    compliance_contract.TRADE_HELD: "held",
    "compliance.trade_released": "cleared",
    "compliance.trade_rejected": "rejected",
}


def _emit(
    uow: UnitOfWork,
    type_: str,
    row: ObligationRow,
    data: dict[str, Any],
    cause: Envelope | None,
    now: datetime,
) -> None:
    uow.outbox.put(
        new_event(
            type=type_,
            source="settlement",
            subject=row.trade_id,
            correlation_id=row.correlation_id,
            cause=cause,
            actor=ACTOR,
            data=data,
            time=now,
        ),
        topic=SETTLEMENT_EVENTS,
        key=row.account,
    )


async def create_obligation(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeCaptured.model_validate(event.data)
    market = domain.market_for(trade.isin)
    settle_on, cycle = domain.settlement_date(market, trade.trade_date, business_days)
    now = datetime.now(UTC)
    obligation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"obligation:{trade.trade_id}"))
    inserted = await uow.session.scalar(
        insert(ObligationRow)
        .values(
            obligation_id=obligation_id,
            trade_id=trade.trade_id,
            account=trade.account,
            side=trade.side,
            isin=trade.isin,
            quantity=trade.quantity,
            amount=trade.gross_amount,
            currency=trade.currency,
            trade_date=trade.trade_date,
            settlement_date=settle_on,
            cycle_days=cycle,
            market=market.code,
            counterparty_lei=trade.counterparty_lei,
            settlement_type=trade.settlement_type,
            state="awaiting_compliance",
            correlation_id=event.correlation_id,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["trade_id"])
        .returning(ObligationRow.obligation_id)
    )
    if inserted is None:
        return
    row = await uow.session.get(ObligationRow, obligation_id)
    if row is None:
        raise RuntimeError("obligation vanished")
    _emit(
        uow,
        contract.OBLIGATION_CREATED,
        row,
        contract.ObligationCreated(
            trade_id=row.trade_id,
            obligation_id=obligation_id,
            account=row.account,
            settlement_date=settle_on,
            market=market.code,
            cycle_days=cycle,
        ).model_dump(mode="json"),
        event,
        now,
    )
    await advance(uow, row, cause=event, now=now)


async def record_compliance_decision(event: Envelope, uow: UnitOfWork) -> None:
    decision = COMPLIANCE_DECISION[event.type]
    trade_id = str(event.data["trade_id"])
    # The newest decision wins, whatever order the decisions arrive in.
    await uow.session.execute(
        insert(ComplianceDecisionRow)
        .values(trade_id=trade_id, decision=decision, decided_at=event.time)
        .on_conflict_do_update(
            index_elements=["trade_id"],
            set_={"decision": decision, "decided_at": event.time},
            where=ComplianceDecisionRow.decided_at < event.time,
        )
    )
    row = (
        await uow.session.execute(
            sa.select(ObligationRow).where(ObligationRow.trade_id == trade_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is not None:  # else the capture has not arrived yet; it will read the decision
        await advance(uow, row, cause=event, now=datetime.now(UTC))


async def current_ssi(
    uow: UnitOfWork, counterparty_lei: str, market: str, on: date
) -> SsiRow | None:
    return (
        await uow.session.execute(
            sa.select(SsiRow)
            .where(
                SsiRow.counterparty_lei == counterparty_lei,
                SsiRow.market == market,
                SsiRow.effective_from <= on,
            )
            .order_by(SsiRow.effective_from.desc(), SsiRow.version.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def advance(
    uow: UnitOfWork, row: ObligationRow, *, cause: Envelope | None, now: datetime
) -> None:
    """Move a not-yet-instructed obligation as far as what is known allows."""
    if row.state not in ("awaiting_compliance", "held", "needs_ssi"):
        return
    decision = await uow.session.scalar(
        sa.select(ComplianceDecisionRow.decision).where(
            ComplianceDecisionRow.trade_id == row.trade_id
        )
    )
    ssi = await current_ssi(uow, row.counterparty_lei, row.market, row.settlement_date)
    state = domain.next_state(
        compliance=decision,
        ssi=None
        if ssi is None
        else domain.Ssi(
            counterparty_lei=ssi.counterparty_lei,
            market=ssi.market,
            depository=ssi.depository,
            custodian_bic=ssi.custodian_bic,
            safekeeping_account=ssi.safekeeping_account,
            cash_account=ssi.cash_account,
        ),
    )
    if state == row.state:
        return
    if state == "needs_ssi":
        _emit(
            uow,
            contract.NEEDS_SSI,
            row,
            {
                "trade_id": row.trade_id,
                "account": row.account,
                "counterparty_lei": row.counterparty_lei,
                "market": row.market,
            },
            cause,
            now,
        )
    if state == "ready" and ssi is not None:
        await instruct(uow, row, ssi, cause=cause, now=now)
        return
    row.state = state
    row.updated_at = now


async def instruct(
    uow: UnitOfWork, row: ObligationRow, ssi: SsiRow, *, cause: Envelope | None, now: datetime
) -> None:
    """Gross settlement: one instruction for the trade (netting runs group them)."""
    terms = domain.instruction_terms(
        side=row.side,
        settlement_type=row.settlement_type,
        quantity=row.quantity,
        amount=row.amount,
    )
    instruction_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"instruction:{row.obligation_id}"))
    uow.session.add(
        InstructionRow(
            instruction_id=instruction_id,
            trade_ids=[row.trade_id],
            account=row.account,
            direction=terms.direction,
            payment=terms.payment,
            isin=row.isin,
            quantity=terms.quantity,
            amount=terms.amount,
            currency=row.currency,
            settlement_date=row.settlement_date,
            depository=ssi.depository,
            counterparty_lei=row.counterparty_lei,
            state="instructed",
            status_reason=None,
            created_at=now,
            updated_at=now,
        )
    )
    row.state = "instructed"
    row.instruction_id = instruction_id
    row.updated_at = now
    uow.outbox.put(
        new_event(
            type=csd_contract.INSTRUCTION,
            source="settlement",
            subject=instruction_id,
            correlation_id=row.correlation_id,
            cause=cause,
            actor=ACTOR,
            time=now,
            data=csd_contract.CsdInstruction(
                instruction_id=instruction_id,
                trade_ids=[row.trade_id],
                account=row.account,
                direction=terms.direction,
                payment=terms.payment,
                isin=row.isin,
                quantity=terms.quantity,
                amount=terms.amount,
                currency=row.currency,
                settlement_date=row.settlement_date,
                depository=ssi.depository,
                counterparty_lei=row.counterparty_lei,
            ).model_dump(mode="json"),
        ),
        topic=CSD_INSTRUCTIONS,
        key=instruction_id,
    )
    _emit(
        uow,
        contract.INSTRUCTED,
        row,
        contract.SettlementStep(
            trade_id=row.trade_id, instruction_id=instruction_id, account=row.account
        ).model_dump(mode="json"),
        cause,
        now,
    )


async def apply_csd_status(event: Envelope, uow: UnitOfWork) -> None:
    status = csd_contract.CsdStatus.model_validate(event.data)
    instruction = (
        await uow.session.execute(
            sa.select(InstructionRow)
            .where(InstructionRow.instruction_id == status.instruction_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if instruction is None:
        raise domain.SettlementError(f"status for unknown instruction {status.instruction_id}")
    if instruction.state in ("settled", "cancelled"):
        return  # final: a late or repeated status changes nothing
    if status.status == "pending":
        instruction.status_reason = status.reason
        return
    new_state = domain.CSD_OUTCOME_STATE[status.status]
    if new_state == instruction.state:
        return
    now = datetime.now(UTC)
    instruction.state = new_state
    instruction.status_reason = status.reason
    instruction.updated_at = now
    obligations = (
        await uow.session.execute(
            sa.select(ObligationRow).where(ObligationRow.trade_id.in_(instruction.trade_ids))
        )
    ).scalars()
    for row in obligations:
        row.state = new_state
        row.updated_at = now
        if new_state in ("settled", "partially_settled"):
            quantity = status.settled_quantity or row.quantity
            amount = (row.amount * quantity / row.quantity) if row.quantity else row.amount
            _emit(
                uow,
                contract.SETTLED if new_state == "settled" else "settlement.partially_settled",
                row,
                contract.SettlementSettled(
                    trade_id=row.trade_id,
                    instruction_id=instruction.instruction_id,
                    account=row.account,
                    side=row.side,  # type: ignore[arg-type]
                    isin=row.isin,
                    quantity=quantity,
                    amount=amount,
                    currency=row.currency,
                    settlement_date=row.settlement_date,
                    counterparty_lei=row.counterparty_lei,
                ).model_dump(mode="json"),
                event,
                now,
            )
        else:
            _emit(
                uow,
                contract.MATCHED if new_state == "matched" else contract.FAILED,
                row,
                contract.SettlementStep(
                    trade_id=row.trade_id,
                    instruction_id=instruction.instruction_id,
                    account=row.account,
                    reason=status.reason,
                ).model_dump(mode="json"),
                event,
                now,
            )


async def add_ssi(
    uow: UnitOfWork,
    *,
    counterparty_lei: str,
    market: str,
    depository: str,
    custodian_bic: str,
    safekeeping_account: str,
    cash_account: str,
    effective_from: date,
) -> SsiRow:
    """A new version of the counterparty's SSI for the market; waiting obligations proceed."""
    if market not in MARKETS:
        raise domain.UnknownMarket(f"unknown market '{market}'")
    now = datetime.now(UTC)
    async with uow:
        version = (
            await uow.session.scalar(
                sa.select(sa.func.coalesce(sa.func.max(SsiRow.version), 0)).where(
                    SsiRow.counterparty_lei == counterparty_lei, SsiRow.market == market
                )
            )
            or 0
        ) + 1
        row = SsiRow(
            counterparty_lei=counterparty_lei,
            market=market,
            version=version,
            depository=depository,
            custodian_bic=custodian_bic,
            safekeeping_account=safekeeping_account,
            cash_account=cash_account,
            effective_from=effective_from,
            created_at=now,
        )
        uow.session.add(row)
        await uow.session.flush()
        waiting = (
            await uow.session.execute(
                sa.select(ObligationRow)
                .where(
                    ObligationRow.counterparty_lei == counterparty_lei,
                    ObligationRow.market == market,
                    ObligationRow.state == "needs_ssi",
                )
                .with_for_update()
            )
        ).scalars()
        for obligation in waiting:
            await advance(uow, obligation, cause=None, now=now)
        await uow.commit()
    return row
