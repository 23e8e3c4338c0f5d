"""Fails management: failed instructions and those pending past their intended settlement
date, their age and their CSDR cash penalty (see settlement.penalties for the rules)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from settlement import domain, penalties
from settlement.calendars import business_days
from settlement.markets import MARKETS
from settlement.schemas import FailOut, PenaltySummaryOut
from settlement.tables import InstructionRow, ObligationRow

# Still expecting the depository to settle: past the intended settlement date, a fail. A
# partially settled instruction's open remainder is a fail too, for the remainder only.
PENDING_STATES = ("instructed", "matched", "partially_settled")


def today() -> date:
    return datetime.now(UTC).date()


async def list_fails(
    session: AsyncSession, *, as_of: date, counterparty_lei: str | None = None
) -> list[FailOut]:
    query = (
        sa.select(InstructionRow)
        .where(InstructionRow.kind == "securities")
        .where(
            sa.or_(
                InstructionRow.state == "failed",
                sa.and_(
                    InstructionRow.state.in_(PENDING_STATES),
                    InstructionRow.settlement_date < as_of,
                ),
            )
        )
        .order_by(InstructionRow.settlement_date, InstructionRow.instruction_id)
    )
    if counterparty_lei is not None:
        query = query.where(InstructionRow.counterparty_lei == counterparty_lei)
    instructions = list((await session.execute(query)).scalars())
    trade_ids = {t for i in instructions for t in i.trade_ids}
    obligations: dict[str, ObligationRow] = {}
    if trade_ids:
        rows = await session.execute(
            sa.select(ObligationRow).where(ObligationRow.trade_id.in_(trade_ids))
        )
        obligations = {r.trade_id: r for r in rows.scalars()}
    return [
        _fail(i, [obligations[t] for t in i.trade_ids if t in obligations], as_of)
        for i in instructions
    ]


def _fail(instruction: InstructionRow, covered: list[ObligationRow], as_of: date) -> FailOut:
    market_code = covered[0].market if covered else instruction.isin[:2]
    market = MARKETS.get(market_code)
    calendar = business_days(market.calendar if market else "XNYS")
    total_quantity = sum((o.quantity for o in covered), Decimal(0))
    total_amount = sum((o.amount for o in covered), Decimal(0))
    if total_quantity:
        price = total_amount / total_quantity
    elif instruction.quantity:
        price = instruction.amount / instruction.quantity
    else:
        price = Decimal(0)
    remaining = domain.remaining_quantity(instruction.quantity, instruction.settled_quantity)
    assessment = penalties.assess(
        intended_settlement_date=instruction.settlement_date,
        as_of=as_of,
        is_business_day=calendar.is_business_day,
        csdr=bool(market and market.csdr),
        status_reason=instruction.status_reason,
        direction=instruction.direction,
        credit_debit=instruction.credit_debit,
        isin=instruction.isin,
        # Penalised on what is still to settle: all of it, or a partial's remainder.
        quantity=remaining,
        price=price,
        currency=instruction.currency,
    )

    return FailOut(
        instruction_id=instruction.instruction_id,
        state=instruction.state,
        trade_ids=list(instruction.trade_ids),
        counterparty_lei=instruction.counterparty_lei,
        isin=instruction.isin,
        direction=instruction.direction,
        payment=instruction.payment,
        quantity=instruction.quantity,
        amount=instruction.amount,
        settled_quantity=instruction.settled_quantity,
        remaining_quantity=remaining,
        currency=instruction.currency,
        market=market_code,
        intended_settlement_date=instruction.settlement_date,
        as_of=as_of,
        age_business_days=assessment.age,
        status_reason=instruction.status_reason,
        reason_code=assessment.reason_code,
        csdr=bool(market and market.csdr),
        asset_class=assessment.asset_class,
        penalty_basis=assessment.basis,
        reference_value=assessment.reference_value,
        penalty=assessment.penalty,
        penalty_note=assessment.penalty_note,
        liable=assessment.liable,
    )


def penalties_per_counterparty(fails: list[FailOut]) -> list[PenaltySummaryOut]:
    """The accrued penalties summed per counterparty and currency (fails with a penalty)."""
    totals: dict[tuple[str, str], PenaltySummaryOut] = {}
    for fail in fails:
        if fail.penalty is None:
            continue
        key = (fail.counterparty_lei, fail.currency)
        summary = totals.setdefault(
            key,
            PenaltySummaryOut(
                counterparty_lei=fail.counterparty_lei,
                currency=fail.currency,
                fail_count=0,
                penalty=Decimal(0),
                penalty_us_liable=Decimal(0),
                penalty_counterparty_liable=Decimal(0),
            ),
        )
        summary.fail_count += 1
        summary.penalty += fail.penalty
        if fail.liable == "us":
            summary.penalty_us_liable += fail.penalty
        elif fail.liable == "counterparty":
            summary.penalty_counterparty_liable += fail.penalty
    return [totals[k] for k in sorted(totals)]
