"""Reconciliation as a control: what each service holds about a set of trades, compared
with what the gateway captured, and every difference reported as a break.

Pure: the facts come in as values (the extracts read them), the breaks go out as values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

# Gateway states in which a trade no longer settles.
CANCELLED = "cancelled"
REJECTED = "rejected"
SETTLED = "settled"
ZERO = Decimal(0)
# The services store amounts as NUMERIC(28, 8): the gateway's exact quantity x price and a
# stored amount agree to that precision.
STORED_AMOUNT_STEP = Decimal("0.00000001")


@dataclass(frozen=True)
class CapturedTrade:
    """A trade as the gateway holds it (its current version)."""

    trade_id: str
    account: str
    side: str
    isin: str
    quantity: Decimal
    gross_amount: Decimal
    currency: str
    settlement_type: str
    version: int
    state: str


@dataclass(frozen=True)
class ObligationFacts:
    trade_id: str
    quantity: Decimal
    amount: Decimal
    version: int
    state: str


@dataclass(frozen=True)
class EvaluationFacts:
    trade_id: str
    version: int
    outcome: str


@dataclass(frozen=True)
class LedgerFacts:
    """The trade's effect on the client's books, summed over all its journal entries:
    securities in the ISIN and cash in the currency, in total and on the settled (not
    pending) accounts; debit minus credit, so a client buying gets +quantity."""

    trade_id: str
    entries: int
    unbalanced_entries: int
    client_securities: Decimal
    client_securities_settled: Decimal
    client_cash: Decimal
    client_cash_settled: Decimal


@dataclass(frozen=True)
class PublishedEvent:
    """An event a service wrote to its outbox for a *.events topic (audit records those)."""

    event_id: str
    event_type: str
    service: str
    correlation_id: str


@dataclass(frozen=True)
class AuditedEvent:
    event_id: str
    event_type: str
    correlation_id: str
    payload_hash: str


@dataclass(frozen=True)
class Facts:
    captured: Sequence[CapturedTrade]
    obligations: Sequence[ObligationFacts]
    evaluations: Sequence[EvaluationFacts]
    ledger: Sequence[LedgerFacts]
    published: Sequence[PublishedEvent]
    audited: Sequence[AuditedEvent]
    # Trades another service knows in the period that the gateway never captured.
    uncaptured: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Trades asked for by id that no service knows.
    unknown: Sequence[str] = ()
    # Whole-book controls: trial balance per unit (must all be zero) and the audit chain.
    trial_balance: Mapping[str, Decimal] = field(default_factory=dict)
    audit_verified: bool | None = None
    audit_verification_detail: str = ""


@dataclass(frozen=True)
class Break:
    trade_id: str | None
    service: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Report:
    trades: int
    quantity: Decimal
    gross_amounts: Mapping[str, Decimal]
    checked: Mapping[str, int]
    breaks: tuple[Break, ...]

    @property
    def clean(self) -> bool:
        return not self.breaks


def _sign(side: str) -> int:
    return 1 if side == "BUY" else -1


def _cash_tolerance(exponent: int) -> Decimal:
    """A settlement rounds cash to the currency's minor unit: half of it is within rounding."""
    return Decimal(1).scaleb(-exponent) / 2


def reconcile(facts: Facts, *, currency_exponents: Mapping[str, int] | None = None) -> Report:
    exponents = currency_exponents or {}
    breaks: list[Break] = []
    obligations = _unique(facts.obligations, "settlement", "obligation", breaks)
    ledger = {f.trade_id: f for f in facts.ledger}
    evaluations: dict[str, list[EvaluationFacts]] = {}
    for evaluation in facts.evaluations:
        evaluations.setdefault(evaluation.trade_id, []).append(evaluation)

    for trade in facts.captured:
        breaks += _settlement_breaks(trade, obligations.get(trade.trade_id))
        breaks += _compliance_breaks(trade, evaluations.get(trade.trade_id, []))
        obligation = obligations.get(trade.trade_id)
        breaks += _ledger_breaks(
            trade,
            ledger.get(trade.trade_id),
            settlement_state=obligation.state if obligation is not None else None,
            tolerance=_cash_tolerance(exponents.get(trade.currency, 2)),
        )
    breaks += _audit_breaks(facts)
    for service, trade_ids in sorted(facts.uncaptured.items()):
        breaks += [
            Break(t, service, "not_captured", f"{service} holds a trade the gateway never captured")
            for t in sorted(trade_ids)
        ]
    breaks += [Break(t, "gateway", "unknown", "no service knows this trade") for t in facts.unknown]
    for unit, total in sorted(facts.trial_balance.items()):
        if total != ZERO:
            breaks.append(
                Break(
                    None, "ledger", "trial_balance", f"debits exceed credits in {unit} by {total}"
                )
            )
    if facts.audit_verified is False or facts.audit_verified is None:
        detail = facts.audit_verification_detail or "the chain was not verified"
        breaks.append(Break(None, "audit", "chain_not_verified", detail))

    amounts: dict[str, Decimal] = {}
    for trade in facts.captured:
        amounts[trade.currency] = amounts.get(trade.currency, ZERO) + trade.gross_amount
    return Report(
        trades=len(facts.captured),
        quantity=sum((t.quantity for t in facts.captured), ZERO),
        gross_amounts=dict(sorted(amounts.items())),
        checked={
            "obligations": len(facts.obligations),
            "evaluations": len(facts.evaluations),
            "journal_entries": sum(f.entries for f in facts.ledger),
            "published_events": len(facts.published),
            "audit_records": len(facts.audited),
        },
        breaks=tuple(breaks),
    )


def _unique(
    items: Iterable[ObligationFacts], service: str, what: str, breaks: list[Break]
) -> dict[str, ObligationFacts]:
    by_trade: dict[str, ObligationFacts] = {}
    for item in items:
        if item.trade_id in by_trade:
            breaks.append(Break(item.trade_id, service, "duplicate", f"more than one {what}"))
            continue
        by_trade[item.trade_id] = item
    return by_trade


def _settlement_breaks(trade: CapturedTrade, obligation: ObligationFacts | None) -> list[Break]:
    t = trade.trade_id
    if obligation is None:
        if trade.state in (CANCELLED, REJECTED):
            return []  # a trade cancelled or rejected before settlement saw it
        return [Break(t, "settlement", "missing", "no obligation for a captured trade")]
    if trade.state == CANCELLED:
        if obligation.state != CANCELLED:
            return [
                Break(t, "settlement", "state", f"obligation {obligation.state}, trade cancelled")
            ]
        return []
    found: list[Break] = []
    if obligation.version != trade.version:
        found.append(
            Break(
                t,
                "settlement",
                "version",
                f"obligation v{obligation.version}, trade v{trade.version}",
            )
        )
    elif obligation.quantity != trade.quantity:
        found.append(
            Break(
                t,
                "settlement",
                "quantity",
                f"obligation {obligation.quantity}, trade {trade.quantity}",
            )
        )
    elif abs(obligation.amount - trade.gross_amount) >= STORED_AMOUNT_STEP:
        found.append(
            Break(
                t,
                "settlement",
                "amount",
                f"obligation {obligation.amount}, trade {trade.gross_amount}",
            )
        )
    if (obligation.state == SETTLED) != (trade.state == SETTLED):
        found.append(
            Break(
                t,
                "gateway",
                "state",
                f"status view says {trade.state}, settlement says {obligation.state}",
            )
        )
    return found


def _compliance_breaks(trade: CapturedTrade, evaluations: list[EvaluationFacts]) -> list[Break]:
    t = trade.trade_id
    versions = Counter(e.version for e in evaluations)
    found = [
        Break(t, "compliance_monitor", "duplicate", f"{count} evaluations of v{version}")
        for version, count in sorted(versions.items())
        if count > 1
    ]
    if trade.version not in versions and trade.state != CANCELLED:
        found.append(
            Break(t, "compliance_monitor", "missing", f"no evaluation of v{trade.version}")
        )
    return found


def _ledger_breaks(
    trade: CapturedTrade,
    facts: LedgerFacts | None,
    *,
    settlement_state: str | None,
    tolerance: Decimal,
) -> list[Break]:
    t = trade.trade_id
    settled = settlement_state == SETTLED
    # A partial settlement books part of the trade as settled: nothing exact to expect.
    partial = settlement_state is not None and "partial" in settlement_state
    if trade.state == REJECTED:
        return []  # booked or not, depending on when the rejection came
    if facts is None:
        if trade.state == CANCELLED:
            return []
        return [Break(t, "ledger", "missing", "no journal entry for a captured trade")]
    found: list[Break] = []
    if facts.unbalanced_entries:
        found.append(Break(t, "ledger", "unbalanced", f"{facts.unbalanced_entries} entries"))
    if trade.state == CANCELLED:
        expected_securities = ZERO
        expected_cash = ZERO
    else:
        expected_securities = _sign(trade.side) * trade.quantity
        paid = trade.gross_amount if trade.settlement_type == "DVP" else ZERO
        expected_cash = -_sign(trade.side) * paid
    if facts.client_securities != expected_securities:
        found.append(
            Break(
                t,
                "ledger",
                "quantity",
                f"client securities {facts.client_securities}, expected {expected_securities}",
            )
        )
    if abs(facts.client_cash - expected_cash) > tolerance:
        found.append(
            Break(
                t, "ledger", "amount", f"client cash {facts.client_cash}, expected {expected_cash}"
            )
        )
    if settled and facts.client_securities_settled != expected_securities:
        found.append(
            Break(
                t,
                "ledger",
                "settlement",
                f"settled securities {facts.client_securities_settled}, "
                f"expected {expected_securities}",
            )
        )
    if (
        not settled
        and not partial
        and facts.client_securities_settled != ZERO
        and trade.state != CANCELLED
    ):
        found.append(
            Break(
                t,
                "ledger",
                "settlement",
                f"settled securities {facts.client_securities_settled} before settlement",
            )
        )
    return found


def _audit_breaks(facts: Facts) -> list[Break]:
    found: list[Break] = []
    recorded = Counter(a.event_id for a in facts.audited)
    hashes = Counter(a.payload_hash for a in facts.audited)
    for event in facts.published:
        if event.event_id not in recorded:
            found.append(
                Break(
                    event.correlation_id,
                    "audit",
                    "missing",
                    f"{event.event_type} {event.event_id} from {event.service} not recorded",
                )
            )
    seen: set[str] = set()
    for audited in facts.audited:
        if audited.event_id in seen:
            continue
        seen.add(audited.event_id)
        if recorded[audited.event_id] > 1 or hashes[audited.payload_hash] > 1:
            found.append(
                Break(
                    audited.correlation_id,
                    "audit",
                    "duplicate",
                    f"{audited.event_type} {audited.event_id} recorded more than once",
                )
            )
    # The gateway's outbox is where the chain starts: a captured trade it never published
    # is missing everywhere downstream.
    published_captures = {
        e.correlation_id
        for e in facts.published
        if e.event_type == "trade.captured" and e.service == "gateway"
    }
    for trade in facts.captured:
        if trade.trade_id not in published_captures:
            found.append(
                Break(trade.trade_id, "gateway", "unpublished", "no trade.captured in the outbox")
            )
    return found
