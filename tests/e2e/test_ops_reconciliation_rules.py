"""The reconciliation rules alone (bo_tools.ops.reconciliation is pure): consistent facts are
clean, and each kind of difference is a break naming the trade and the service."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from bo_tools.ops.reconciliation import (
    AuditedEvent,
    CapturedTrade,
    EvaluationFacts,
    Facts,
    LedgerFacts,
    ObligationFacts,
    PublishedEvent,
    reconcile,
)

quantities = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**9), places=8)
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(10**5), places=4)


@st.composite
def trades(draw: st.DrawFn) -> CapturedTrade:
    quantity, price = draw(quantities), draw(prices)
    return CapturedTrade(
        trade_id=f"T-{draw(st.uuids()).hex}",
        account=f"ACC-{draw(st.integers(1, 10)):03d}",
        side=draw(st.sampled_from(["BUY", "SELL"])),
        isin="US0378331005",
        quantity=quantity,
        gross_amount=quantity * price,
        currency=draw(st.sampled_from(["USD", "EUR", "JPY"])),
        settlement_type=draw(st.sampled_from(["DVP", "FOP"])),
        version=draw(st.integers(1, 3)),
        state=draw(st.sampled_from(["captured", "instructed", "settled", "cancelled"])),
    )


def consistent(captured: list[CapturedTrade]) -> Facts:
    """What every service holds when each applied every event of these trades once."""
    obligations, evaluations, ledger, published, audited = [], [], [], [], []
    for t in captured:
        cancelled = t.state == "cancelled"
        obligations.append(
            ObligationFacts(t.trade_id, t.quantity, t.gross_amount, t.version, t.state)
        )
        evaluations.append(EvaluationFacts(t.trade_id, t.version, "cleared"))
        sign = 1 if t.side == "BUY" else -1
        securities = Decimal(0) if cancelled else sign * t.quantity
        paid = t.gross_amount if t.settlement_type == "DVP" and not cancelled else Decimal(0)
        settled = t.state == "settled"
        ledger.append(
            LedgerFacts(
                trade_id=t.trade_id,
                entries=3 if cancelled else 1 + settled,
                unbalanced_entries=0,
                client_securities=securities,
                client_securities_settled=securities if settled else Decimal(0),
                client_cash=-sign * paid,
                client_cash_settled=-sign * paid if settled else Decimal(0),
            )
        )
        for n, (service, event_type) in enumerate(
            [("gateway", "trade.captured"), ("ledger", "ledger.posted")]
        ):
            event_id = f"{t.trade_id}-{n}"
            published.append(PublishedEvent(event_id, event_type, service, t.trade_id))
            audited.append(AuditedEvent(event_id, event_type, t.trade_id, f"hash-{event_id}"))
    return Facts(
        captured=captured,
        obligations=obligations,
        evaluations=evaluations,
        ledger=ledger,
        published=published,
        audited=audited,
        trial_balance={"USD": Decimal(0), "US0378331005": Decimal(0)},
        audit_verified=True,
    )


unique_trades = st.lists(trades(), min_size=1, max_size=20, unique_by=lambda t: t.trade_id)


@given(unique_trades)
def test_consistent_facts_reconcile_clean(captured: list[CapturedTrade]) -> None:
    report = reconcile(consistent(captured), currency_exponents={"JPY": 0})
    assert report.clean, report.breaks
    assert report.trades == len(captured)
    assert report.quantity == sum((t.quantity for t in captured), Decimal(0))


@given(unique_trades, st.data())
def test_a_posting_applied_twice_is_a_ledger_break_of_that_trade(
    captured: list[CapturedTrade], data: st.DataObject
) -> None:
    facts = consistent(captured)
    victim = data.draw(st.sampled_from([t for t in captured if t.state != "cancelled"] or [None]))
    if victim is None:
        return
    ledger = [
        dataclasses.replace(f, entries=f.entries + 1, client_securities=2 * f.client_securities)
        if f.trade_id == victim.trade_id
        else f
        for f in facts.ledger
    ]
    report = reconcile(dataclasses.replace(facts, ledger=ledger))
    assert {(b.trade_id, b.service, b.kind) for b in report.breaks} >= {
        (victim.trade_id, "ledger", "quantity")
    }


@given(unique_trades, st.data())
def test_a_fact_missing_anywhere_is_a_break_naming_the_trade_and_service(
    captured: list[CapturedTrade], data: st.DataObject
) -> None:
    facts = consistent(captured)
    live = [t for t in captured if t.state != "cancelled"]
    if not live:
        return
    victim = data.draw(st.sampled_from(live)).trade_id
    where = data.draw(st.sampled_from(["settlement", "compliance_monitor", "ledger", "audit"]))
    if where == "settlement":
        facts = dataclasses.replace(
            facts, obligations=[o for o in facts.obligations if o.trade_id != victim]
        )
    elif where == "compliance_monitor":
        facts = dataclasses.replace(
            facts, evaluations=[e for e in facts.evaluations if e.trade_id != victim]
        )
    elif where == "ledger":
        facts = dataclasses.replace(facts, ledger=[f for f in facts.ledger if f.trade_id != victim])
    else:
        facts = dataclasses.replace(
            facts, audited=[a for a in facts.audited if a.correlation_id != victim]
        )
    breaks = reconcile(facts).breaks
    assert any(b.trade_id == victim and b.service == where for b in breaks), breaks
    assert all(b.trade_id == victim for b in breaks), breaks


def test_terms_that_differ_are_breaks_with_both_values() -> None:
    trade = CapturedTrade(
        "T-1", "ACC-001", "BUY", "US0378331005", Decimal(100), Decimal(1000), "USD", "DVP", 1,
        "instructed",
    )  # fmt: skip
    facts = consistent([trade])
    wrong = [dataclasses.replace(facts.obligations[0], quantity=Decimal(10))]
    report = reconcile(dataclasses.replace(facts, obligations=wrong))
    assert [(b.service, b.kind, b.detail) for b in report.breaks] == [
        ("settlement", "quantity", "obligation 10, trade 100")
    ]
    amended = [dataclasses.replace(facts.evaluations[0], version=2)]
    report = reconcile(dataclasses.replace(facts, evaluations=amended))
    assert [(b.service, b.kind) for b in report.breaks] == [("compliance_monitor", "missing")]


def test_status_view_behind_settlement_is_a_gateway_break() -> None:
    trade = CapturedTrade(
        "T-2", "ACC-001", "SELL", "US0378331005", Decimal(5), Decimal(50), "USD", "DVP", 1,
        "matched",
    )  # fmt: skip
    facts = consistent([trade])
    settled = [dataclasses.replace(facts.obligations[0], state="settled")]
    ledger = [
        dataclasses.replace(
            facts.ledger[0], client_securities_settled=Decimal(-5), client_cash_settled=Decimal(50)
        )
    ]
    breaks = reconcile(dataclasses.replace(facts, obligations=settled, ledger=ledger)).breaks
    assert [(b.service, b.kind) for b in breaks] == [("gateway", "state")]


def test_book_level_controls_are_breaks() -> None:
    facts = dataclasses.replace(
        consistent([]),
        trial_balance={"USD": Decimal("0.01"), "EUR": Decimal(0)},
        audit_verified=False,
        audit_verification_detail="chain invalid at seq 7",
        uncaptured={"settlement": ["T-orphan"]},
        unknown=["T-nowhere"],
    )
    kinds = {(b.trade_id, b.service, b.kind) for b in reconcile(facts).breaks}
    assert kinds == {
        (None, "ledger", "trial_balance"),
        (None, "audit", "chain_not_verified"),
        ("T-orphan", "settlement", "not_captured"),
        ("T-nowhere", "gateway", "unknown"),
    }


def test_a_cash_difference_within_the_currency_rounding_is_no_break() -> None:
    trade = CapturedTrade(
        "T-3", "ACC-001", "BUY", "US0378331005", Decimal(3), Decimal("1000.004"), "USD", "DVP",
        1, "settled",
    )  # fmt: skip
    facts = consistent([trade])
    rounded = [dataclasses.replace(facts.ledger[0], client_cash=Decimal("-1000.00"))]
    assert reconcile(dataclasses.replace(facts, ledger=rounded)).clean
    off = [dataclasses.replace(facts.ledger[0], client_cash=Decimal("-1000.02"))]
    assert [b.kind for b in reconcile(dataclasses.replace(facts, ledger=off)).breaks] == ["amount"]
