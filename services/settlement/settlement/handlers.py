"""Settlement use cases: trade captured → obligation; amended → recomputed at the new
version, cancelled → cancelled (both refused once instructed); compliance's decision on the
current version and SSIs release it to an instruction; the depository's status moves it to
matched, settled or failed."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Context, Decimal, localcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert

import bo_iso20022
from bo_common.consumer import PoisonMessage
from bo_common.contracts import compliance as compliance_contract
from bo_common.contracts import csd as csd_contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import settlement as contract
from bo_common.envelope import Envelope, new_event
from bo_common.logs import get_logger
from bo_common.topics import CSD_INSTRUCTIONS, SETTLEMENT_EVENTS
from bo_common.unit_of_work import UnitOfWork
from settlement import domain, netting
from settlement.calendars import business_days
from settlement.markets import MARKETS, depository_bic
from settlement.tables import (
    CancellationRow,
    ComplianceDecisionRow,
    InstructionRow,
    ObligationRow,
    RefusedChangeRow,
    SsiRow,
)

log = get_logger(__name__)

# Quantities are booked to 8 decimals across the back office.
QUANTITY_STEP = Decimal("0.00000001")

ACTOR = "service:settlement"

# Netting disabled (SETTLEMENT_NETTING_INTERVAL_S=0): an obligation is instructed gross as
# soon as it is ready. Otherwise it stays ready until a netting run (settlement.runs)
# instructs it. Set by main.create_app from the settings.
GROSS_WHEN_READY = True

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


def obligation_id_of(trade_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"obligation:{trade_id}"))


def _terms_of(trade: gateway_contract.TradeCaptured) -> domain.ObligationTerms:
    return domain.obligation_terms(
        side=trade.side,
        isin=trade.isin,
        quantity=trade.quantity,
        amount=trade.gross_amount,
        currency=trade.currency,
        trade_date=trade.trade_date,
        counterparty_lei=trade.counterparty_lei,
        settlement_type=trade.settlement_type,
        calendar_for=business_days,
    )


def _obligation_data(row: ObligationRow) -> dict[str, Any]:
    return contract.ObligationCreated(
        trade_id=row.trade_id,
        obligation_id=row.obligation_id,
        account=row.account,
        settlement_date=row.settlement_date,
        market=row.market,
        cycle_days=row.cycle_days,
        version=row.version,
    ).model_dump(mode="json")


# The statements of the capture and decision path, built once: a statement built per event
# cost more client CPU (coercion, cache key) than the database spent running it.
_LOCK_OBLIGATION = (
    sa.select(ObligationRow)
    .where(ObligationRow.trade_id == sa.bindparam("trade_id"))
    .with_for_update()
)
_OPEN_OBLIGATION = (
    insert(ObligationRow)
    .on_conflict_do_nothing(index_elements=["trade_id"])
    .returning(ObligationRow)
)
# Parameter sets of one statement on the table (executemany), one set per decision.
_DECISIONS_TABLE = ComplianceDecisionRow.__table__
_NEW_DECISION = insert(_DECISIONS_TABLE)
_RECORD_DECISIONS = _NEW_DECISION.on_conflict_do_update(
    index_elements=["trade_id", "version"],
    set_={
        "decision": _NEW_DECISION.excluded.decision,
        "decided_at": _NEW_DECISION.excluded.decided_at,
    },
    where=_DECISIONS_TABLE.c.decided_at < _NEW_DECISION.excluded.decided_at,
)
_SSI_VERSIONS = sa.select(SsiRow).where(
    SsiRow.counterparty_lei == sa.bindparam("lei"),
    SsiRow.market == sa.bindparam("market"),
    SsiRow.asset_class == sa.bindparam("asset_class"),
    SsiRow.effective_from <= sa.bindparam("on"),
)
# The same reads for a run of trades (create_obligations, record_compliance_decisions): one
# statement each, the trade ids (or LEIs) as one array parameter.
_TRADE_IDS = sa.bindparam("trade_ids", type_=ARRAY(sa.Text))
_LOCK_OBLIGATIONS = (
    sa.select(ObligationRow)
    .where(ObligationRow.trade_id == sa.any_(_TRADE_IDS))
    .order_by(ObligationRow.trade_id)
    .with_for_update()
)
_CANCELLATIONS = sa.select(CancellationRow).where(CancellationRow.trade_id == sa.any_(_TRADE_IDS))
_DECISIONS = sa.select(
    ComplianceDecisionRow.trade_id, ComplianceDecisionRow.version, ComplianceDecisionRow.decision
).where(ComplianceDecisionRow.trade_id == sa.any_(_TRADE_IDS))
_SSI_VERSIONS_OF = sa.select(SsiRow).where(
    SsiRow.counterparty_lei == sa.any_(sa.bindparam("leis", type_=ARRAY(sa.Text))),
    SsiRow.effective_from <= sa.bindparam("on"),
)


async def _lock_obligation(uow: UnitOfWork, trade_id: str) -> ObligationRow | None:
    return (
        await uow.session.execute(_LOCK_OBLIGATION, {"trade_id": trade_id})
    ).scalar_one_or_none()


async def _open_obligation(
    event: Envelope, uow: UnitOfWork, trade: gateway_contract.TradeCaptured, now: datetime
) -> None:
    """The obligation of these terms (at the trade's version), unless the trade has one."""
    await _open_obligations([(event, trade)], uow, now)


async def _open_obligations(
    captured: list[tuple[Envelope, gateway_contract.TradeCaptured]],
    uow: UnitOfWork,
    now: datetime,
) -> None:
    """Each trade's obligation of its terms, unless it has one; then each moved as far as
    what is known allows, in the order given. The trades are distinct: four statements for
    the whole run (obligations, cancellations, decisions, SSIs), one each for every trade
    of it as before."""
    params = []
    for event, trade in captured:
        terms = _terms_of(trade)
        params.append(
            {
                "obligation_id": obligation_id_of(trade.trade_id),
                "trade_id": trade.trade_id,
                "account": trade.account,
                **asdict(terms),
                "version": trade.version,
                "state": "awaiting_compliance",
                "correlation_id": event.correlation_id,
                "created_at": now,
                "updated_at": now,
            }
        )
    opened = {row.trade_id: row for row in await uow.session.scalars(_OPEN_OBLIGATION, params)}
    if not opened:
        return  # every trade has one
    trade_ids = list(opened)
    # A cancellation can only come first out of order (a replayed dead letter): honour it.
    cancellations = {
        row.trade_id: row
        for row in await uow.session.scalars(_CANCELLATIONS, {"trade_ids": trade_ids})
    }
    known = await _known_for(uow, [row for row in opened.values() if _may_advance(row)])
    for event, trade in captured:
        row = opened.get(trade.trade_id)
        if row is None:
            continue  # the trade has one
        _emit(uow, contract.OBLIGATION_CREATED, row, _obligation_data(row), event, now)
        cancellation = cancellations.get(row.trade_id)
        if cancellation is not None:
            _cancel(uow, row, reason=cancellation.reason, cause=event, now=now)
            continue
        if row.trade_id in known:
            decision, ssi = known[row.trade_id]
            await _advance_with(uow, row, decision=decision, ssi=ssi, cause=event, now=now)


async def create_obligation(event: Envelope, uow: UnitOfWork) -> None:
    await create_obligations([event], uow)


async def create_obligations(events: list[Envelope], uow: UnitOfWork) -> None:
    """trade.captured, a run at a time (the consume loop's batch handler): the same rows
    and events, in the same order, as create_obligation for each in turn."""
    captured = [
        (event, gateway_contract.TradeCaptured.model_validate(event.data)) for event in events
    ]
    if len({trade.trade_id for _, trade in captured}) < len(captured):
        # One trade twice (two events of one capture): in turn, so the second sees the first.
        for one in captured:
            await _open_obligations([one], uow, datetime.now(UTC))
        return
    await _open_obligations(captured, uow, datetime.now(UTC))


async def amend_obligation(event: Envelope, uow: UnitOfWork) -> None:
    """trade.amended: recompute a not-yet-instructed obligation from the new terms, at the
    new version, and wait for compliance's decision on that version; refuse after the
    instruction."""
    trade = gateway_contract.TradeAmended.model_validate(event.data)
    now = datetime.now(UTC)
    row = await _lock_obligation(uow, trade.trade_id)
    if row is None:
        # Cannot happen in order (same partition key as the capture); the amended terms are
        # the trade's current terms, so they make its obligation.
        log.warning("amendment_before_capture", trade_id=trade.trade_id, version=trade.version)
        await _open_obligation(event, uow, trade, now)
        return
    if trade.account != row.account:
        raise domain.SettlementError(
            f"amendment of trade {trade.trade_id} moves it from account {row.account} to "
            f"{trade.account}; the account of a trade never changes"
        )
    action = domain.amendment_action(
        current_version=row.version,
        amendment_version=trade.version,
        instructed=row.instruction_id is not None,
        cancelled=row.cancelled_at is not None,
    )
    if action in ("stale", "cancelled"):
        log.info(
            "amendment_ignored",
            trade_id=trade.trade_id,
            version=trade.version,
            obligation_version=row.version,
            why=action,
        )
        return
    if action == "refuse":
        await _refuse(
            uow, row, change="amend", version=trade.version, requested=trade.reason, cause=event
        )
        return
    for field, value in asdict(_terms_of(trade)).items():
        setattr(row, field, value)
    row.version = trade.version
    # The decision on the previous terms does not cover these: wait for the one on these.
    row.state = "awaiting_compliance"
    row.updated_at = now
    _emit(uow, contract.OBLIGATION_AMENDED, row, _obligation_data(row), event, now)
    await advance(uow, row, cause=event, now=now)


async def cancel_obligation(event: Envelope, uow: UnitOfWork) -> None:
    """trade.cancelled: a not-yet-instructed obligation is cancelled for good; after the
    instruction the cancellation is refused and goes to operations."""
    cancel = gateway_contract.TradeCancelled.model_validate(event.data)
    now = datetime.now(UTC)
    await uow.session.execute(
        insert(CancellationRow)
        .values(
            trade_id=cancel.trade_id,
            account=cancel.account,
            version=cancel.version,
            reason=cancel.reason,
            correlation_id=event.correlation_id,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["trade_id"])
    )
    row = await _lock_obligation(uow, cancel.trade_id)
    if row is None:
        # Cannot happen in order; the recorded cancellation is read when the trade arrives.
        log.warning("cancellation_before_capture", trade_id=cancel.trade_id)
        return
    action = domain.cancellation_action(
        instructed=row.instruction_id is not None, cancelled=row.cancelled_at is not None
    )
    if action == "already_cancelled":
        return
    if action == "refuse":
        await _refuse(
            uow, row, change="cancel", version=cancel.version, requested=cancel.reason, cause=event
        )
        return
    _cancel(uow, row, reason=cancel.reason, cause=event, now=now)


def _cancel(
    uow: UnitOfWork, row: ObligationRow, *, reason: str, cause: Envelope, now: datetime
) -> None:
    row.state = "cancelled"
    row.cancelled_at = now
    row.cancel_reason = reason
    row.updated_at = now
    _emit(
        uow,
        contract.OBLIGATION_CANCELLED,
        row,
        contract.ObligationCancelled(
            trade_id=row.trade_id,
            obligation_id=row.obligation_id,
            account=row.account,
            version=row.version,
            reason=reason,
        ).model_dump(mode="json"),
        cause,
        now,
    )


async def _refuse(
    uow: UnitOfWork,
    row: ObligationRow,
    *,
    change: domain.Change,
    version: int,
    requested: str,
    cause: Envelope,
) -> None:
    """The instruction stands: record the change for operations (once) and say so."""
    if row.instruction_id is None:
        raise RuntimeError("only an instructed obligation refuses a change")
    now = datetime.now(UTC)
    instruction = await uow.session.get(InstructionRow, row.instruction_id)
    reason = domain.refusal_reason(
        change=change,
        trade_id=row.trade_id,
        instruction_id=row.instruction_id,
        instruction_state=instruction.state if instruction is not None else row.state,
    )
    refusal_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"refusal:{row.trade_id}:{change}:{version}"))
    inserted = await uow.session.scalar(
        insert(RefusedChangeRow)
        .values(
            refusal_id=refusal_id,
            trade_id=row.trade_id,
            obligation_id=row.obligation_id,
            account=row.account,
            instruction_id=row.instruction_id,
            change=change,
            version=version,
            reason=reason,
            requested_reason=requested,
            refused_at=now,
        )
        .on_conflict_do_nothing()
        .returning(RefusedChangeRow.refusal_id)
    )
    if inserted is None:
        return  # the same change again: already refused and queued
    log.warning("change_refused", trade_id=row.trade_id, change=change, version=version)
    _emit(
        uow,
        contract.CHANGE_REFUSED,
        row,
        contract.ChangeRefused(
            trade_id=row.trade_id,
            account=row.account,
            change=change,
            version=version,
            reason=reason,
        ).model_dump(mode="json"),
        cause,
        now,
    )


async def record_compliance_decision(event: Envelope, uow: UnitOfWork) -> None:
    await record_compliance_decisions([event], uow)


async def record_compliance_decisions(events: list[Envelope], uow: UnitOfWork) -> None:
    """Compliance's decisions, a run at a time (the consume loop's batch handler): the same
    rows and events, in the same order, as one decision at a time."""
    decisions = [
        {
            "trade_id": str(event.data["trade_id"]),
            "version": int(event.data.get("version") or 1),
            "decision": COMPLIANCE_DECISION[event.type],
            "decided_at": event.time,
        }
        for event in events
    ]
    if len({decision["trade_id"] for decision in decisions}) < len(decisions):
        # Two decisions on one trade (held, then released): in turn, each on what the one
        # before it left.
        for event, decision in zip(events, decisions, strict=True):
            await _record_decisions([(event, decision)], uow)
        return
    await _record_decisions(list(zip(events, decisions, strict=True)), uow)


async def _record_decisions(
    decided: list[tuple[Envelope, dict[str, Any]]], uow: UnitOfWork
) -> None:
    # Every decision is recorded under the trade version it is about; within a version the
    # newest wins, whatever order the decisions arrive in.
    await uow.session.execute(_RECORD_DECISIONS, [decision for _, decision in decided])
    trade_ids = sorted({decision["trade_id"] for _, decision in decided})
    rows = {
        row.trade_id: row
        for row in await uow.session.scalars(_LOCK_OBLIGATIONS, {"trade_ids": trade_ids})
    }
    current: list[tuple[Envelope, ObligationRow]] = []
    for event, decision in decided:
        row = rows.get(decision["trade_id"])
        if row is None:
            continue  # the capture has not arrived yet; it will read the decision
        if not domain.decision_counts(
            decision_version=decision["version"], obligation_version=row.version
        ):
            log.info(
                "compliance_decision_not_current",
                trade_id=row.trade_id,
                decision=decision["decision"],
                version=decision["version"],
                obligation_version=row.version,
            )
            continue
        current.append((event, row))
    await _advance_all(uow, [(row, event) for event, row in current], datetime.now(UTC))


async def current_ssi(
    uow: UnitOfWork, counterparty_lei: str, market: str, asset_class: str, on: date
) -> SsiRow | None:
    """The SSI version in force on `on` (the obligation's intended settlement date) for the
    key; no fallback to another asset class."""
    versions = (
        await uow.session.execute(
            _SSI_VERSIONS,
            {"lei": counterparty_lei, "market": market, "asset_class": asset_class, "on": on},
        )
    ).scalars()
    return domain.version_in_force(versions, on)


def _may_advance(row: ObligationRow) -> bool:
    """Not yet instructed, nor cancelled: what it waits for may have come."""
    return (
        row.state in ("awaiting_compliance", "held", "needs_ssi")
        and row.cancelled_at is None
        and row.instruction_id is None
    )


async def _known_for(
    uow: UnitOfWork, rows: list[ObligationRow]
) -> dict[str, tuple[str | None, SsiRow | None]]:
    """For each obligation (of distinct trades): the compliance decision on its version
    (only that one counts, see domain.decision_counts) and the SSI version in force on its
    settlement date; two statements for all."""
    if not rows:
        return {}
    trade_ids = [row.trade_id for row in rows]
    decisions = {
        (trade_id, version): decision
        for trade_id, version, decision in await uow.session.execute(
            _DECISIONS, {"trade_ids": trade_ids}
        )
    }
    versions: dict[tuple[str, str, str], list[SsiRow]] = {}
    for ssi in await uow.session.scalars(
        _SSI_VERSIONS_OF,
        {
            "leis": sorted({row.counterparty_lei for row in rows}),
            "on": max(row.settlement_date for row in rows),
        },
    ):
        versions.setdefault((ssi.counterparty_lei, ssi.market, ssi.asset_class), []).append(ssi)
    return {
        row.trade_id: (
            decisions.get((row.trade_id, row.version)),
            domain.version_in_force(
                versions.get(
                    (row.counterparty_lei, row.market, domain.ssi_asset_class(row.isin)), ()
                ),
                row.settlement_date,
            ),
        )
        for row in rows
    }


async def advance(
    uow: UnitOfWork, row: ObligationRow, *, cause: Envelope | None, now: datetime
) -> None:
    """Move a not-yet-instructed obligation as far as what is known allows."""
    await _advance_all(uow, [(row, cause)], now)


async def _advance_all(
    uow: UnitOfWork, moves: list[tuple[ObligationRow, Envelope | None]], now: datetime
) -> None:
    """advance for obligations of distinct trades, in order (each with its cause): what
    they wait for is read in two statements for all of them."""
    known = await _known_for(uow, [row for row, _ in moves if _may_advance(row)])
    for row, cause in moves:
        if row.trade_id in known:
            decision, ssi = known[row.trade_id]
            await _advance_with(uow, row, decision=decision, ssi=ssi, cause=cause, now=now)


async def _advance_with(
    uow: UnitOfWork,
    row: ObligationRow,
    *,
    decision: str | None,
    ssi: SsiRow | None,
    cause: Envelope | None,
    now: datetime,
) -> None:
    """advance, with the decision on the obligation's version and the SSI in force read."""
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
    if state == "ready" and ssi is not None and GROSS_WHEN_READY:
        await instruct(uow, row, ssi, cause=cause, now=now)
        return
    # Netting on: a ready obligation waits for the next netting run (settlement.runs).
    row.state = state
    row.updated_at = now


def instruction_id_of(obligation_id: str) -> str:
    """The instruction's id, also its sese.023 TxId: Max35Text, so a UUID without hyphens."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"instruction:{obligation_id}").hex


async def instruct(
    uow: UnitOfWork, row: ObligationRow, ssi: SsiRow, *, cause: Envelope | None, now: datetime
) -> None:
    """Gross settlement: one instruction for the trade (netting runs group them), sent to
    the depository as a sese.023 through the outbox."""
    terms = domain.instruction_terms(
        side=row.side,
        settlement_type=row.settlement_type,
        quantity=row.quantity,
        amount=row.amount,
    )
    # The cash the depository moves: rounded to the currency's minor units (see
    # csd_contract.settlement_amount). The row keeps this rounded amount, so the
    # instruction, its message and the settled amount agree.
    amount = csd_contract.settlement_amount(terms.amount, row.currency)
    instruction_id = instruction_id_of(row.obligation_id)
    message = bo_iso20022.SettlementInstruction(
        instruction_id=instruction_id,
        movement="RECE" if terms.direction == "RECEIVE" else "DELI",
        payment=terms.payment,
        trade_date=row.trade_date,
        settlement_date=row.settlement_date,
        isin=row.isin,
        quantity=terms.quantity,
        settlement_amount=amount if terms.payment == "APMT" else None,
        currency=row.currency if terms.payment == "APMT" else None,
        depository_bic=depository_bic(ssi.depository, row.market),
        counterparty_lei=row.counterparty_lei,
        counterparty_bic=ssi.custodian_bic,
        safekeeping_account=ssi.safekeeping_account,
        cash_account=ssi.cash_account,
        trade_ids=(row.trade_id,),
    )
    uow.session.add(
        InstructionRow(
            instruction_id=instruction_id,
            trade_ids=[row.trade_id],
            account=row.account,
            direction=terms.direction,
            payment=terms.payment,
            credit_debit=(
                None
                if terms.payment != "APMT"
                else "DBIT"
                if terms.direction == "RECEIVE"
                else "CRDT"
            ),
            isin=row.isin,
            quantity=terms.quantity,
            amount=amount,
            currency=row.currency,
            settlement_date=row.settlement_date,
            depository=ssi.depository,
            counterparty_lei=row.counterparty_lei,
            state="instructed",
            status_reason=None,
            created_at=now,
            updated_at=now,
            ssi_id=ssi.ssi_id,
        )
    )
    row.state = "instructed"
    row.instruction_id = instruction_id
    row.updated_at = now
    uow.outbox.put_raw(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"sese.023:{instruction_id}"),
        event_type=csd_contract.INSTRUCTION,
        topic=CSD_INSTRUCTIONS,
        key=instruction_id,
        payload=bo_iso20022.render_sese023(message),
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


def settled_location(ssi: SsiRow | None, *, depository: str, market: str) -> dict[str, str | None]:
    """Where a trade settled, for its settlement.settled / partially_settled event: the
    BIC of the depository (as the sese.023 names the place of settlement) and the SSI's
    custodian and safekeeping account. Without the SSI (an instruction sent before
    revision 0006), the depository alone, from the instruction."""
    if ssi is None:
        return {"depository": depository_bic(depository, market)}
    return {
        "depository": depository_bic(ssi.depository, market),
        "custodian_bic": ssi.custodian_bic,
        "safekeeping_account": ssi.safekeeping_account,
    }


@dataclass(frozen=True)
class CsdStatus:
    """What settlement reads from a sese.024 or sese.025 on csd.status."""

    instruction_id: str
    status: str  # matched, pending, failed, settled, partially_settled
    reason: str | None = None
    settled_quantity: Decimal | None = None
    settled_amount: Decimal | None = None


def csd_status_of(value: bytes) -> CsdStatus:
    """The status a csd.status message carries; PoisonMessage (dead-lettered at once, with
    the validation error) for anything that is not a schema-valid sese.024 or sese.025."""
    try:
        message = bo_iso20022.parse(value)
    except bo_iso20022.InvalidMessage as error:
        raise PoisonMessage(str(error)) from error
    if isinstance(message, bo_iso20022.StatusAdvice):
        reason = message.reason_code
        if reason is not None and message.reason_text:
            reason = f"{reason}: {message.reason_text}"
        return CsdStatus(message.instruction_id, message.status, reason)
    if isinstance(message, bo_iso20022.SettlementConfirmation):
        return CsdStatus(
            message.instruction_id,
            message.status,
            settled_quantity=message.settled_quantity,
            settled_amount=message.settled_amount,
        )
    raise PoisonMessage(
        f"{bo_iso20022.SESE_023}: a settlement instruction is not a status; csd.status "
        "carries sese.024 and sese.025"
    )


async def apply_csd_status(value: bytes, uow: UnitOfWork) -> None:
    """A raw csd.status message (ISO 20022 XML): move the instruction and its trades."""
    await apply_csd_statuses([value], uow)


async def apply_csd_statuses(values: list[bytes], uow: UnitOfWork) -> None:
    """csd.status, a run of messages at a time (the consume loop's raw batch handler): the
    instructions and their obligations read in two statements, then each status applied in
    order, as apply_csd_status does one by one. A message that fails (not a status, an
    unknown instruction) fails the run, which is then applied message by message."""
    statuses = [csd_status_of(value) for value in values]
    instructions = {
        row.instruction_id: row
        for row in await uow.session.scalars(
            _LOCK_INSTRUCTIONS,
            {"instruction_ids": sorted({status.instruction_id for status in statuses})},
        )
    }
    trade_ids = sorted({t for row in instructions.values() for t in row.trade_ids})
    obligations = {
        row.trade_id: row
        for row in await uow.session.scalars(_OBLIGATIONS_OF, {"trade_ids": trade_ids})
    }
    for status in statuses:
        instruction = instructions.get(status.instruction_id)
        if instruction is None:
            raise domain.SettlementError(f"status for unknown instruction {status.instruction_id}")
        await _apply_status(uow, status, instruction, obligations)


_LOCK_INSTRUCTIONS = (
    sa.select(InstructionRow)
    .where(
        InstructionRow.instruction_id
        == sa.any_(sa.bindparam("instruction_ids", type_=ARRAY(sa.Text)))
    )
    .order_by(InstructionRow.instruction_id)
    .with_for_update()
)
_OBLIGATIONS_OF = sa.select(ObligationRow).where(ObligationRow.trade_id == sa.any_(_TRADE_IDS))


async def _apply_status(
    uow: UnitOfWork,
    status: CsdStatus,
    instruction: InstructionRow,
    obligations: dict[str, ObligationRow],
) -> None:
    """One status: the instruction (locked) and its trades' obligations (read) are given."""
    log.info("csd_status", instruction_id=status.instruction_id, status=status.status)
    if instruction.state in ("settled", "cancelled"):
        return  # final: a late or repeated status changes nothing
    if status.status == "pending":
        instruction.status_reason = status.reason
        return
    new_state = domain.CSD_OUTCOME_STATE[status.status]
    # A further partial confirmation settles more of the remainder; any other repeat of
    # the state the instruction is in changes nothing.
    if new_state == instruction.state and new_state != "partially_settled":
        return
    now = datetime.now(UTC)
    if new_state in ("settled", "partially_settled"):
        settled_quantity, settled_amount = domain.settled_so_far(
            instructed_quantity=instruction.quantity,
            instructed_amount=instruction.amount,
            before_quantity=instruction.settled_quantity,
            before_amount=instruction.settled_amount,
            confirmed_quantity=status.settled_quantity,
            confirmed_amount=status.settled_amount,
            in_full=new_state == "settled",
        )
        if new_state == instruction.state and settled_quantity == instruction.settled_quantity:
            return
        instruction.settled_quantity = settled_quantity
        instruction.settled_amount = settled_amount
    instruction.state = new_state
    instruction.status_reason = status.reason
    instruction.updated_at = now
    rows = sorted(
        (obligations[t] for t in instruction.trade_ids if t in obligations),
        key=lambda r: r.trade_id,
    )
    shares = (
        covered_shares(instruction, rows, status)
        if len(instruction.trade_ids) > 1 and new_state in ("settled", "partially_settled")
        else {}
    )
    ssi = (
        await uow.session.get(SsiRow, instruction.ssi_id)
        if instruction.ssi_id is not None and new_state in ("settled", "partially_settled")
        else None
    )
    for row in rows:
        row.state = new_state
        row.updated_at = now
        if new_state in ("settled", "partially_settled"):
            if row.trade_id in shares:
                # A netted instruction: this trade's own share (see covered_shares).
                quantity, amount = shares[row.trade_id]
            else:
                quantity = status.settled_quantity or row.quantity
                if status.settled_amount is not None:
                    # Against payment, one trade: the cash the depository says it moved.
                    amount = status.settled_amount
                else:
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
                    **settled_location(ssi, depository=instruction.depository, market=row.market),
                ).model_dump(mode="json"),
                None,
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
                None,
                now,
            )


def trade_cash(row: ObligationRow) -> Decimal:
    """The cash a trade settles on its own: its amount rounded to the currency's minor
    units as a gross instruction would carry it (FOP: the trade's amount, as gross)."""
    if row.settlement_type != "DVP":
        return row.amount
    return csd_contract.settlement_amount(row.amount, row.currency)


def covered_shares(
    instruction: InstructionRow, rows: list[ObligationRow], status: CsdStatus
) -> dict[str, tuple[Decimal, Decimal]]:
    """What each trade of a netted instruction settled (quantity, amount).

    Settled in full: the net settled, so each trade settled its own quantity and cash.
    Partially settled: the depository settled a fraction f = settled / instructed of the
    net quantity (of the net cash for a payment free of delivery, whose quantity is 0);
    each trade settles that fraction of its own terms. The gross totals
    (sum of the trades' quantities x f, rounded down to 8 decimals; sum of their cash x f,
    rounded down to the currency's minor units) are split pro rata over the trades
    (netting.pro_rata: exact Decimal, each share rounded down, the remainder on the last
    trade in trade id order), so the shares add up to the totals exactly.
    """
    if status.status == "settled" or status.settled_quantity is None:
        return {r.trade_id: (r.quantity, trade_cash(r)) for r in rows}
    if instruction.quantity == 0:
        # A payment free of delivery (quantity 0) has no securities fraction: a partial
        # payment (no depository we know sends one) is the fraction of the cash.
        if not status.settled_amount or not instruction.amount:
            return {r.trade_id: (r.quantity, trade_cash(r)) for r in rows}
        fraction_num, fraction_den = status.settled_amount, instruction.amount
    else:
        fraction_num, fraction_den = status.settled_quantity, instruction.quantity
    quantities = [r.quantity for r in rows]
    cash = [trade_cash(r) for r in rows]
    with localcontext(Context(prec=1000)):
        quantity_total = (sum(quantities, Decimal(0)) * fraction_num / fraction_den).quantize(
            QUANTITY_STEP, rounding=ROUND_DOWN
        )
        cash_step = (
            Decimal(1).scaleb(-csd_contract.minor_units(instruction.currency))
            if all(r.settlement_type == "DVP" for r in rows)
            else QUANTITY_STEP
        )
        cash_total = (sum(cash, Decimal(0)) * fraction_num / fraction_den).quantize(
            cash_step, rounding=ROUND_DOWN
        )
    if sum(cash, Decimal(0)) == 0:
        cash_shares = [Decimal(0)] * len(rows)
    else:
        cash_shares = netting.pro_rata(cash_total, cash, cash_step)
    quantity_shares = netting.pro_rata(quantity_total, quantities, QUANTITY_STEP)
    return {r.trade_id: (q, a) for r, q, a in zip(rows, quantity_shares, cash_shares, strict=True)}


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
    asset_class: str = "equity",
) -> SsiRow:
    """A new version of the counterparty's SSI for the market and asset class; waiting
    obligations proceed."""
    if market not in MARKETS:
        raise domain.UnknownMarket(f"unknown market '{market}'")
    async with uow:
        row = await _new_ssi_version(
            uow,
            counterparty_lei=counterparty_lei,
            market=market,
            asset_class=asset_class,
            depository=depository,
            custodian_bic=custodian_bic,
            safekeeping_account=safekeeping_account,
            cash_account=cash_account,
            effective_from=effective_from,
        )
        await uow.commit()
    return row


async def update_ssi(
    uow: UnitOfWork, ssi_id: int, *, effective_from: date, **fields: str | None
) -> SsiRow:
    """A new version of the SSI `ssi_id` belongs to (same key): the given fields, the others
    as in the key's latest version. Versions are never edited. The new version may not take
    effect before the latest one (SsiEffectiveTooEarly)."""
    async with uow:
        named = await uow.session.get(SsiRow, ssi_id)
        if named is None:
            raise domain.SsiNotFound(f"no SSI {ssi_id}")
        # Serialise versions of one key: lock its rows.
        latest = (
            (
                await uow.session.execute(
                    sa.select(SsiRow)
                    .where(
                        SsiRow.counterparty_lei == named.counterparty_lei,
                        SsiRow.market == named.market,
                        SsiRow.asset_class == named.asset_class,
                    )
                    .order_by(SsiRow.version.desc())
                    .with_for_update()
                )
            )
            .scalars()
            .first()
        )
        assert latest is not None
        if effective_from < latest.effective_from:
            raise domain.SsiEffectiveTooEarly(
                f"effective_from {effective_from} is before {latest.effective_from}, "
                f"when version {latest.version} took effect"
            )

        def value(name: str) -> str:
            given = fields.get(name)
            return given if given is not None else str(getattr(latest, name))

        row = await _new_ssi_version(
            uow,
            counterparty_lei=named.counterparty_lei,
            market=named.market,
            asset_class=named.asset_class,
            depository=value("depository"),
            custodian_bic=value("custodian_bic"),
            safekeeping_account=value("safekeeping_account"),
            cash_account=value("cash_account"),
            effective_from=effective_from,
        )
        await uow.commit()
    return row


async def _new_ssi_version(
    uow: UnitOfWork,
    *,
    counterparty_lei: str,
    market: str,
    asset_class: str,
    depository: str,
    custodian_bic: str,
    safekeeping_account: str,
    cash_account: str,
    effective_from: date,
) -> SsiRow:
    now = datetime.now(UTC)
    version = (
        await uow.session.scalar(
            sa.select(sa.func.coalesce(sa.func.max(SsiRow.version), 0)).where(
                SsiRow.counterparty_lei == counterparty_lei,
                SsiRow.market == market,
                SsiRow.asset_class == asset_class,
            )
        )
        or 0
    ) + 1
    row = SsiRow(
        counterparty_lei=counterparty_lei,
        market=market,
        asset_class=asset_class,
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
    await _advance_all(
        uow,
        [(o, None) for o in waiting if domain.ssi_asset_class(o.isin) == asset_class],
        now,
    )
    return row
