"""Deterministic evaluation: replaying a recorded sequence of trade events from empty state
gives the same alerts every time, with every rule on; the projection the stateful rules
read (positions, last prices, recent trades) follows the events exactly. Pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from compliance_monitor.domain import Cancelled, Projection, replay
from compliance_monitor.domain_projection import Parts, ProjectionSlice, Terms
from compliance_monitor.domain_rules import (
    Context,
    ListEntry,
    RuleVersion,
    TradeFacts,
    evaluate,
    in_force,
    parse_parameters,
)
from compliance_monitor.sessions import ExchangeSessions

T0 = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ISINS = ("US0378331005", "US5949181045", "US88160R1014")
ACCOUNTS = ("ACC-001", "ACC-002", "ACC-003")


def _rule(name: str, kind: str, action: str, **parameters: object) -> RuleVersion:
    return RuleVersion(
        name=name,
        version=1,
        kind=kind,
        enabled=True,
        action=action,  # type: ignore[arg-type]
        severity="medium",
        parameters=parse_parameters(kind, parameters),
        effective_from=EPOCH,
    )


# Every kind on, with thresholds small enough for random trades to cross them.
RULES = [
    _rule("restricted-list", "restricted_list", "hold"),
    _rule("watch-list", "watch_list", "hold"),
    _rule("notional-limit", "large_trade", "hold", default_threshold="150000"),
    _rule("large-trade", "large_trade", "alert", default_threshold="50000"),
    _rule("wash-trade", "wash_trade", "alert", groups={"G": ["ACC-001", "ACC-002"]}),
    _rule("position-limit", "position_limit", "alert", default_max_quantity="600"),
    _rule("concentration-limit", "concentration_limit", "alert", min_holdings_value="20000"),
    _rule("trading-session", "trading_session", "alert"),
    _rule("price-deviation", "price_deviation", "alert", band_percent="5"),
]
LISTS = Context(
    restricted={"US88160R1014": "blackout"},
    watched_leis={"984500DEM0WATCH0LE78": "sanctioned"},
    watched_names=[ListEntry("Oceanic Petrotrade Limited", "sanctioned")],
    sessions=ExchangeSessions(),
)


@st.composite
def trade_events(draw: st.DrawFn) -> list[TradeFacts | Cancelled]:
    """Captures, amendments (a newer version of a captured trade) and cancellations."""
    events: list[TradeFacts | Cancelled] = []
    versions: dict[str, TradeFacts] = {}
    for n in range(draw(st.integers(min_value=1, max_value=30))):
        choice = draw(st.sampled_from(["capture", "capture", "capture", "amend", "cancel"]))
        if choice != "capture" and versions:
            trade_id = draw(st.sampled_from(sorted(versions)))
            if choice == "cancel":
                events.append(Cancelled(trade_id))
                continue
            old = versions[trade_id]
            quantity = Decimal(draw(st.integers(min_value=1, max_value=500)))
            new = replace(
                old, version=old.version + 1, quantity=quantity, gross_amount=quantity * old.price
            )
            versions[trade_id] = new
            events.append(new)
            continue
        quantity = Decimal(draw(st.integers(min_value=1, max_value=500)))
        price = Decimal(draw(st.integers(min_value=90, max_value=110)))
        trade = TradeFacts(
            trade_id=f"T-{n}",
            version=1,
            account=draw(st.sampled_from(ACCOUNTS)),
            side=draw(st.sampled_from(["BUY", "SELL"])),
            isin=draw(st.sampled_from(ISINS)),
            quantity=quantity,
            price=price,
            gross_amount=quantity * price,
            currency="USD",
            counterparty_lei=draw(
                st.sampled_from(["784F5XWPLTWKTBV3E584", "984500DEM0WATCH0LE78"])
            ),
            venue="XNYS",
            trade_time=T0 + timedelta(minutes=draw(st.integers(min_value=0, max_value=600))),
        )
        versions[trade.trade_id] = trade
        events.append(trade)
    return events


@settings(max_examples=60, deadline=None)
@given(trade_events())
def test_replaying_the_same_events_from_empty_state_gives_the_same_alerts(
    events: list[TradeFacts | Cancelled],
) -> None:
    first = replay(events, RULES, LISTS)
    second = replay(list(events), RULES, LISTS)

    assert first == second
    assert len({a.alert_id for a in first}) == len(first)  # one alert per version and rule


@settings(max_examples=60, deadline=None)
@given(trade_events())
def test_positions_are_the_net_quantity_of_the_current_versions_not_cancelled(
    events: list[TradeFacts | Cancelled],
) -> None:
    projection = Projection()
    latest: dict[str, TradeFacts] = {}
    cancelled: set[str] = set()
    for event in events:
        if isinstance(event, Cancelled):
            projection.apply_cancel(event.trade_id)
            cancelled.add(event.trade_id)
        elif event.trade_id not in cancelled:
            projection.apply_version(event)
            latest[event.trade_id] = event

    expected: dict[tuple[str, str], Decimal] = {}
    for trade_id, trade in latest.items():
        if trade_id not in cancelled:
            key = (trade.account, trade.isin)
            expected[key] = expected.get(key, Decimal(0)) + trade.signed_quantity
    actual = {key: quantity for key, quantity in projection.positions.items() if quantity}
    assert actual == {key: quantity for key, quantity in expected.items() if quantity}


def test_a_recorded_day_raises_the_alerts_expected_of_it() -> None:
    """A small recorded sequence, replayed: what each rule must say about it."""

    def trade(n: int, **changes: object) -> TradeFacts:
        base = TradeFacts(
            trade_id=f"T-{n}",
            version=1,
            account="ACC-001",
            side="BUY",
            isin="US0378331005",
            quantity=Decimal("100"),
            price=Decimal("100"),
            gross_amount=Decimal("10000"),
            currency="USD",
            counterparty_lei="784F5XWPLTWKTBV3E584",
            venue="XNYS",
            trade_time=T0 + timedelta(minutes=n),
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    events: list[TradeFacts | Cancelled] = [
        trade(1),
        trade(2, account="ACC-002", side="SELL", price=Decimal("100.5")),  # wash (group)
        trade(3, price=Decimal("110"), gross_amount=Decimal("11000")),  # price deviation
        trade(4, isin="US88160R1014"),  # restricted: held
        trade(5, quantity=Decimal("600"), price=Decimal("110"), gross_amount=Decimal("66000")),
        Cancelled("T-5"),
        trade(6, quantity=Decimal("400"), price=Decimal("110"), gross_amount=Decimal("44000")),
        trade(7, price=Decimal("110"), trade_time=datetime(2026, 12, 2, 23, 0, tzinfo=UTC)),
    ]

    raised = replay(events, RULES, LISTS)

    def rules_of(trade_id: str) -> list[str]:
        return sorted(a.rule for a in raised if a.trade_id == trade_id)

    assert rules_of("T-1") == []
    assert rules_of("T-2") == ["wash-trade"]
    # 200 x 110 = 22,000: the account's first holdings over 20,000, all in one ISIN.
    assert rules_of("T-3") == ["concentration-limit", "price-deviation"]
    assert rules_of("T-4") == ["restricted-list"]
    assert [a.blocking for a in raised if a.trade_id == "T-4"] == [True]
    assert rules_of("T-5") == ["concentration-limit", "large-trade", "position-limit"]
    # T-5 was cancelled: T-6 takes the position to 600 (the limit), not 1,200.
    assert rules_of("T-6") == ["concentration-limit"]
    position = next(a for a in raised if a.trade_id == "T-7" and a.rule == "position-limit")
    assert position.evidence["position_after"] == "700"
    assert rules_of("T-7") == ["concentration-limit", "position-limit", "trading-session"]
    assert replay(events, RULES, LISTS) == raised


@settings(max_examples=80, deadline=None)
@given(trade_events())
def test_the_runs_projection_slice_reads_as_the_replay_projection(
    events: list[TradeFacts | Cancelled],
) -> None:
    """domain_projection.ProjectionSlice (what the service evaluates a run against) gives
    every rule the same answers as domain.Projection, version after version. Cancellations
    end a run in the service (they are stored, then the next run loads the slice), so the
    sequence is cut at the first one."""
    first_cancel = next((i for i, e in enumerate(events) if isinstance(e, Cancelled)), None)
    versions = [e for e in events[:first_cancel] if isinstance(e, TradeFacts)]
    model, sliced = Projection(), ProjectionSlice()
    terms: dict[str, Terms] = {}
    latest: dict[str, int] = {}
    for trade in versions:
        if trade.version <= latest.get(trade.trade_id, 0):
            continue
        rules = in_force(RULES, trade.trade_time)
        expected = evaluate(trade, rules, model.context(trade, LISTS))
        before = terms.get(trade.trade_id, Terms())
        got = evaluate(
            trade, rules, sliced.context(trade, before, Parts.of(rules, trade.account), LISTS)
        )
        assert got == expected
        model.apply_version(trade)
        sliced.apply(trade, before, trade.version)
        terms[trade.trade_id] = Terms(trade.side, trade.isin, trade.quantity)
        latest[trade.trade_id] = trade.version
    assert sliced.positions == model.positions
    assert sliced.last_prices == model.last_prices
