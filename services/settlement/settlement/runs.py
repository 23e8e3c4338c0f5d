"""Netting runs: every ready obligation of a settlement date netted (settlement.netting) into
instructions, in one transaction; and the cycle that runs them automatically.

- A run (POST /v1/netting-runs, or the cycle) reads the obligations of its settlement date
  that are ready (cleared for their current version, SSI found, not cancelled, not yet
  instructed), locks them, plans the instructions with `netting.plan_run` and saves, in the
  same transaction: the run, one InstructionRow per planned instruction (its trade ids and
  run id), every obligation instructed with its instruction's id, one sese.023 per
  instruction that is not netted_out in the outbox and settlement.instructed per trade.
  Every netted group is one instruction: a securities one (its cash either way: a receive or
  deliver with payment carries its CdtDbtInd) or a payment free of delivery (payment_only:
  quantity 0 against the net cash; movement and stored direction RECEIVE when the firm pays,
  DELIVER when it is paid, see `netting.PlannedInstruction.movement`).
- A netted_out instruction (quantity and cash both net to zero) sends nothing: it is
  settled by netting at once, with status reason "netted out", and each of its trades is
  settled with settlement.settled carrying the trade's own quantity and cash, as the
  depository path does.
- Counterparties with netting switched off (PUT /v1/counterparties/{lei}/netting) settle
  gross: one instruction per obligation, in the same runs.
- Runs are serialised by a transaction-level advisory lock (RUN_LOCK), so a manual run and a
  cycle never plan the same obligations. The cycle runs every SETTLEMENT_NETTING_INTERVAL_S
  seconds on the replica that gets the session-level advisory lock CYCLE_LOCK (the others
  skip that tick); it nets every settlement date with ready obligations. Whoever holds
  CYCLE_LOCK pauses the cycle (the tests do, to exercise the manual route); a manual run
  does not need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, cast

import sqlalchemy as sa

import bo_iso20022
from bo_common.contracts import csd as csd_contract
from bo_common.contracts import settlement as contract
from bo_common.logs import get_logger
from bo_common.topics import CSD_INSTRUCTIONS
from bo_common.unit_of_work import UnitOfWork
from settlement import domain, netting
from settlement.handlers import _emit, current_ssi, settled_location, trade_cash
from settlement.markets import depository_bic
from settlement.tables import (
    ComplianceDecisionRow,
    CounterpartyNettingRow,
    InstructionRow,
    NettingRunRow,
    ObligationRow,
    SsiRow,
)

log = get_logger(__name__)

# pg advisory lock keys (int8): "netting" run and cycle.
RUN_LOCK = 0x6E657474696E6701
CYCLE_LOCK = 0x6E657474696E6702

NETTED_OUT = "netted out"


def new_run_id() -> str:
    return uuid.uuid4().hex


def _hex(instruction_id: str) -> str:
    """sese.023 TxId is Max35Text: the planned uuid without its hyphens."""
    return uuid.UUID(instruction_id).hex


async def run_netting(
    uow: UnitOfWork,
    *,
    settlement_date: date,
    trigger: str,
    actor: str,
    cutoff_note: str | None = None,
    run_id: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> str:
    """One netting run of the date (see the module docstring); returns its id. A run with
    nothing ready is recorded too, with no instructions."""
    run_id = run_id or new_run_id()
    async with uow:
        session = uow.session
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(RUN_LOCK)))
        at = now()
        rows = list(
            (
                await session.execute(
                    sa.select(ObligationRow)
                    .where(
                        ObligationRow.settlement_date == settlement_date,
                        ObligationRow.state == "ready",
                        ObligationRow.instruction_id.is_(None),
                        ObligationRow.cancelled_at.is_(None),
                    )
                    .order_by(ObligationRow.trade_id)
                    .with_for_update()
                )
            ).scalars()
        )
        cleared = set(
            (
                await session.execute(
                    sa.select(ComplianceDecisionRow.trade_id).where(
                        ComplianceDecisionRow.trade_id.in_([r.trade_id for r in rows]),
                        ComplianceDecisionRow.decision == "cleared",
                        ComplianceDecisionRow.version
                        == sa.select(ObligationRow.version)
                        .where(ObligationRow.trade_id == ComplianceDecisionRow.trade_id)
                        .scalar_subquery(),
                    )
                )
            ).scalars()
        )
        off = set(
            (
                await session.execute(
                    sa.select(CounterpartyNettingRow.counterparty_lei).where(
                        CounterpartyNettingRow.enabled.is_(False)
                    )
                )
            ).scalars()
        )
        ssis: dict[tuple[str, str, str], SsiRow | None] = {}
        ready: list[netting.ReadyObligation] = []
        by_trade: dict[str, ObligationRow] = {}
        for row in rows:
            if row.trade_id not in cleared:
                continue
            key = (row.counterparty_lei, row.market, domain.ssi_asset_class(row.isin))
            if key not in ssis:
                ssis[key] = await current_ssi(uow, *key, settlement_date)
            ssi = ssis[key]
            if ssi is None:
                continue
            by_trade[row.trade_id] = row
            ready.append(
                netting.ReadyObligation(
                    trade_id=row.trade_id,
                    account=row.account,
                    counterparty_lei=row.counterparty_lei,
                    isin=row.isin,
                    currency=row.currency,
                    settlement_date=row.settlement_date,
                    ssi_id=ssi.ssi_id,
                    side=cast(Any, row.side),
                    quantity=row.quantity,
                    # The cash each trade would settle gross (rounded to minor units), so
                    # the net is in the currency's units too.
                    amount=trade_cash(row),
                    settlement_type=cast(Any, row.settlement_type),
                    netting_off=row.counterparty_lei in off,
                )
            )
        ssi_by_id = {s.ssi_id: s for s in ssis.values() if s is not None}
        planned = netting.plan_run(ready, run_id=run_id)
        session.add(
            NettingRunRow(
                run_id=run_id,
                settlement_date=settlement_date,
                trigger=trigger,
                cutoff_note=cutoff_note,
                created_by=actor,
                created_at=at,
                obligation_count=len(ready),
                instruction_count=len(planned),
            )
        )
        for plan in planned:
            _save(uow, plan, [by_trade[t] for t in plan.trade_ids], ssi_by_id, run_id, at)
        await uow.commit()
    log.info(
        "netting_run",
        run_id=run_id,
        settlement_date=settlement_date.isoformat(),
        trigger=trigger,
        obligations=len(ready),
        instructions=len(planned),
    )
    return run_id


def _save(
    uow: UnitOfWork,
    plan: netting.PlannedInstruction,
    rows: list[ObligationRow],
    ssis: dict[int, SsiRow],
    run_id: str,
    now: datetime,
) -> None:
    instruction_id = _hex(plan.instruction_id)
    ssi = ssis[plan.key.ssi_id]
    first = rows[0]
    netted_out = plan.kind == "netted_out"
    uow.session.add(
        InstructionRow(
            instruction_id=instruction_id,
            trade_ids=list(plan.trade_ids),
            account=",".join(plan.accounts),
            direction=plan.movement or "NONE",
            payment=plan.payment,
            credit_debit=plan.credit_debit,
            isin=plan.key.isin,
            quantity=plan.quantity,
            amount=plan.amount,
            currency=plan.key.currency,
            settlement_date=plan.key.settlement_date,
            depository=ssi.depository,
            counterparty_lei=plan.key.counterparty_lei,
            state="settled" if netted_out else "instructed",
            status_reason=NETTED_OUT if netted_out else None,
            created_at=now,
            updated_at=now,
            run_id=run_id,
            kind=plan.kind,
            gross=plan.gross,
            ssi_id=ssi.ssi_id,
        )
    )
    if not netted_out:
        message = bo_iso20022.SettlementInstruction(
            instruction_id=instruction_id,
            movement="RECE" if plan.movement == "RECEIVE" else "DELI",
            payment=plan.payment,
            trade_date=max(r.trade_date for r in rows),
            settlement_date=plan.key.settlement_date,
            isin=plan.key.isin,
            quantity=plan.quantity,
            settlement_amount=plan.amount if plan.payment == "APMT" else None,
            currency=plan.key.currency if plan.payment == "APMT" else None,
            depository_bic=depository_bic(ssi.depository, first.market),
            counterparty_lei=plan.key.counterparty_lei,
            counterparty_bic=ssi.custodian_bic,
            safekeeping_account=ssi.safekeeping_account,
            cash_account=ssi.cash_account,
            trade_ids=plan.trade_ids,
            credit_debit=plan.credit_debit,
        )
        uow.outbox.put_raw(
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"sese.023:{instruction_id}"),
            event_type=csd_contract.INSTRUCTION,
            topic=CSD_INSTRUCTIONS,
            key=instruction_id,
            payload=bo_iso20022.render_sese023(message),
        )
    for row in rows:
        row.state = "settled" if netted_out else "instructed"
        row.instruction_id = instruction_id
        row.updated_at = now
        _emit(
            uow,
            contract.INSTRUCTED,
            row,
            contract.SettlementStep(
                trade_id=row.trade_id, instruction_id=instruction_id, account=row.account
            ).model_dump(mode="json"),
            None,
            now,
        )
        if netted_out:
            # Settled by netting: the trade's own economics, as a confirmation would.
            _emit(
                uow,
                contract.SETTLED,
                row,
                contract.SettlementSettled(
                    trade_id=row.trade_id,
                    instruction_id=instruction_id,
                    account=row.account,
                    side=cast(Any, row.side),
                    isin=row.isin,
                    quantity=row.quantity,
                    amount=trade_cash(row),
                    currency=row.currency,
                    settlement_date=row.settlement_date,
                    counterparty_lei=row.counterparty_lei,
                    **settled_location(ssi, depository=ssi.depository, market=row.market),
                ).model_dump(mode="json"),
                None,
                now,
            )


async def run_cycle(runtime: Any) -> int:
    """One cycle if this replica gets CYCLE_LOCK: a run per date with ready obligations.
    Returns the number of runs (0 also when another holder has the lock)."""
    runs = 0
    async with runtime.engine.connect() as connection:
        got = await connection.scalar(sa.select(sa.func.pg_try_advisory_lock(CYCLE_LOCK)))
        await connection.commit()
        if not got:
            return 0
        try:
            async with runtime.sessions() as session:
                dates = list(
                    (
                        await session.execute(
                            sa.select(ObligationRow.settlement_date)
                            .where(
                                ObligationRow.state == "ready",
                                ObligationRow.instruction_id.is_(None),
                                ObligationRow.cancelled_at.is_(None),
                            )
                            .distinct()
                            .order_by(ObligationRow.settlement_date)
                        )
                    ).scalars()
                )
            for settlement_date in dates:
                await run_netting(
                    runtime.unit_of_work(),
                    settlement_date=settlement_date,
                    trigger="cycle",
                    actor="service:settlement",
                )
                runs += 1
        finally:
            await connection.scalar(sa.select(sa.func.pg_advisory_unlock(CYCLE_LOCK)))
            await connection.commit()
    return runs


async def netting_cycle(runtime: Any) -> None:
    """The background job: a cycle every SETTLEMENT_NETTING_INTERVAL_S seconds until the
    runtime stops (a cycle that fails is logged and the next one tries again)."""
    interval = float(runtime.settings.netting_interval_s)
    stopping: asyncio.Event = runtime.stopping
    if interval <= 0:
        return
    while not stopping.is_set():
        try:
            await run_cycle(runtime)
        except Exception as error:
            log.error("netting_cycle_failed", error=repr(error))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval)
