"""Every rule: planted scenarios that must breach and near misses that must not; rule
parameters and versions. Pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance_monitor.domain_rules import (
    Context,
    InvalidParameters,
    ListEntry,
    Outcome,
    PricePoint,
    RuleVersion,
    SeenTrade,
    TradeFacts,
    UnknownRuleKind,
    evaluate,
    in_force,
    parse_parameters,
)
from compliance_monitor.sessions import ExchangeSessions

T0 = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 in New York
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

TRADE = TradeFacts(
    trade_id="T-1",
    version=1,
    account="ACC-001",
    side="BUY",
    isin="US0378331005",
    quantity=Decimal("100"),
    price=Decimal("200"),
    gross_amount=Decimal("20000"),
    currency="USD",
    counterparty_lei="784F5XWPLTWKTBV3E584",
    venue="XNYS",
    trade_time=T0,
)


def rule(
    kind: str, action: str = "alert", name: str | None = None, **parameters: Any
) -> RuleVersion:
    return RuleVersion(
        name=name or kind.replace("_", "-"),
        version=1,
        kind=kind,
        enabled=True,
        action=action,  # type: ignore[arg-type]
        severity="high",
        parameters=parse_parameters(kind, parameters),
        effective_from=EPOCH,
    )


def outcome(trade: TradeFacts, r: RuleVersion, context: Context | None = None) -> Outcome:
    [result] = evaluate(trade, [r], context or Context())
    assert result.rule == r.name and result.rule_version == 1
    return result


def breached(trade: TradeFacts, r: RuleVersion, context: Context | None = None) -> bool:
    return not outcome(trade, r, context).passed


# -- restricted list ---------------------------------------------------------------------------

RESTRICTED = rule("restricted_list", "hold")


def test_a_trade_in_a_restricted_isin_is_held_with_the_reason() -> None:
    result = outcome(TRADE, RESTRICTED, Context(restricted={TRADE.isin: "research blackout"}))

    assert not result.passed and result.blocking
    assert result.evidence == {"isin": TRADE.isin, "list_reason": "research blackout"}


def test_a_trade_in_another_isin_passes_the_restricted_list() -> None:
    assert not breached(TRADE, RESTRICTED, Context(restricted={"US5949181045": "blackout"}))


# -- watch list --------------------------------------------------------------------------------

WATCH = rule("watch_list", "hold")
WATCHED_NAME = ListEntry("Oceanic Petrotrade Limited", "sanctions list 2026/14")


def test_a_watched_counterparty_lei_is_held() -> None:
    context = Context(watched_leis={TRADE.counterparty_lei: "OFAC SDN"})

    result = outcome(TRADE, WATCH, context)

    assert result.blocking and "OFAC SDN" in result.detail


@pytest.mark.parametrize(
    "name",
    [
        "Oceanic Petro-Trade Ltd",
        "OCEANIC PETROTRADE LTD.",
        "Oceanic Petrotrade Limited",
        "Petrotrade Oceanic Ltd",  # words in another order
    ],
)
def test_a_counterparty_whose_name_is_close_to_a_watched_name_is_held(name: str) -> None:
    result = outcome(TRADE, WATCH, Context(watched_names=[WATCHED_NAME], counterparty_name=name))

    assert result.blocking
    assert result.evidence["matched_name"] == WATCHED_NAME.value
    assert result.evidence["score"] >= 85


@pytest.mark.parametrize(
    "name",
    [
        "Oceanic Shipping Ltd",
        "Ocean Petroleum Trading Co",
        "Goldman Sachs International",
        "Oceanic Foods",  # shares the first word only
    ],
)
def test_a_counterparty_whose_name_only_shares_words_is_not_held(name: str) -> None:
    context = Context(watched_names=[WATCHED_NAME], counterparty_name=name)

    assert not breached(TRADE, WATCH, context)


def test_the_name_threshold_is_a_setting() -> None:
    context = Context(watched_names=[WATCHED_NAME], counterparty_name="Oceanic Petro-Trade Ltd")

    assert not breached(TRADE, rule("watch_list", "hold", name_match_threshold=95), context)


def test_a_counterparty_without_a_known_name_is_screened_by_lei_only() -> None:
    assert not breached(TRADE, WATCH, Context(watched_names=[WATCHED_NAME]))


# -- large trade -----------------------------------------------------------------------------

LARGE = rule("large_trade", thresholds={"USD": "1000000", "GBP": "800000"})


def test_a_trade_over_its_currency_threshold_alerts_without_holding() -> None:
    result = outcome(replace(TRADE, gross_amount=Decimal("1000000.01")), LARGE)

    assert not result.passed and not result.blocking
    assert result.evidence == {
        "gross_amount": "1000000.01",
        "threshold": "1000000",
        "currency": "USD",
    }


def test_a_trade_at_the_threshold_passes() -> None:
    assert not breached(replace(TRADE, gross_amount=Decimal("1000000")), LARGE)


def test_each_currency_has_its_threshold_and_others_the_default() -> None:
    gbp = replace(TRADE, gross_amount=Decimal("900000"), currency="GBP")
    eur = replace(gbp, currency="EUR")

    assert breached(gbp, LARGE)
    assert not breached(eur, LARGE)  # no EUR threshold and no default
    assert breached(eur, rule("large_trade", default_threshold="500000"))


def test_a_large_trade_rule_set_to_hold_holds() -> None:
    hard = rule("large_trade", "hold", thresholds={"USD": "10000000"})

    assert outcome(replace(TRADE, gross_amount=Decimal("10000001")), hard).blocking


# -- wash trade ------------------------------------------------------------------------------

WASH = rule(
    "wash_trade", window_seconds=300, price_band_percent="1", groups={"G": ["ACC-001", "ACC-002"]}
)


def seen(**changes: Any) -> SeenTrade:
    base = SeenTrade(
        "T-0", "ACC-001", "SELL", TRADE.isin, Decimal("200"), T0 - timedelta(seconds=60)
    )
    return replace(base, **changes)


def test_an_opposite_trade_of_the_same_account_in_the_window_and_band_alerts() -> None:
    result = outcome(TRADE, WASH, Context(recent_trades=[seen(price=Decimal("201.9"))]))

    assert not result.passed
    assert [m["trade_id"] for m in result.evidence["matched_trades"]] == ["T-0"]


def test_an_opposite_trade_of_another_account_of_the_same_owner_alerts() -> None:
    assert breached(TRADE, WASH, Context(recent_trades=[seen(account="ACC-002")]))


@pytest.mark.parametrize(
    "near_miss",
    [
        {"side": "BUY"},  # same side
        {"account": "ACC-003"},  # another owner
        {"isin": "US5949181045"},  # another security
        {"trade_time": T0 - timedelta(seconds=301)},  # outside the window
        {"price": Decimal("202.01")},  # outside the band
        {"trade_id": "T-1"},  # the trade itself (an older version)
    ],
)
def test_near_misses_of_a_wash_trade_pass(near_miss: dict[str, Any]) -> None:
    assert not breached(TRADE, WASH, Context(recent_trades=[seen(**near_miss)]))


def test_a_wash_trade_at_the_edge_of_the_window_still_alerts() -> None:
    edge = seen(trade_time=T0 + timedelta(seconds=300), price=Decimal("198"))

    assert breached(TRADE, WASH, Context(recent_trades=[edge]))


# -- position limit --------------------------------------------------------------------------

POSITION = rule(
    "position_limit",
    default_max_quantity="1000",
    max_quantity={"US5949181045": "50", "ACC-001:US5949181045": "500"},
)


def test_a_trade_taking_the_position_beyond_the_limit_alerts() -> None:
    result = outcome(TRADE, POSITION, Context(position_before=Decimal("901")))

    assert not result.passed
    assert result.evidence == {"position_before": "901", "position_after": "1001", "limit": "1000"}


def test_a_trade_taking_the_position_to_the_limit_passes() -> None:
    assert not breached(TRADE, POSITION, Context(position_before=Decimal("900")))


def test_a_short_position_counts_by_its_size() -> None:
    sell = replace(TRADE, side="SELL")

    assert breached(sell, POSITION, Context(position_before=Decimal("-901")))
    assert not breached(sell, POSITION, Context(position_before=Decimal("1000")))


def test_the_most_specific_position_limit_applies() -> None:
    msft = replace(TRADE, isin="US5949181045", quantity=Decimal("100"))

    assert not breached(msft, POSITION, Context(position_before=Decimal("400")))  # 500
    assert breached(replace(msft, account="ACC-002"), POSITION)  # 50 for others


def test_a_position_limit_set_to_hold_holds() -> None:
    hard = replace(POSITION, action="hold")

    assert outcome(TRADE, hard, Context(position_before=Decimal("1000"))).blocking


# -- concentration limit ---------------------------------------------------------------------

CONCENTRATION = rule("concentration_limit", max_percent="50", min_holdings_value="100000")


def test_a_trade_that_makes_one_isin_most_of_the_holdings_alerts() -> None:
    # After the trade: 600 x 200 = 120,000 in the ISIN, 100,000 elsewhere: 54.55 %.
    context = Context(
        position_before=Decimal("500"),
        other_holdings={"US5949181045": (Decimal("1000"), Decimal("100"))},
    )

    result = outcome(TRADE, CONCENTRATION, context)

    assert not result.passed
    assert result.evidence["share_percent"] == "54.55"


def test_a_trade_keeping_the_share_at_the_limit_passes() -> None:
    # 500 x 200 = 100,000 of 200,000: 50 %.
    context = Context(
        position_before=Decimal("400"),
        other_holdings={"US5949181045": (Decimal("1000"), Decimal("100"))},
    )

    assert not breached(TRADE, CONCENTRATION, context)


def test_small_holdings_are_not_checked_for_concentration() -> None:
    assert not breached(TRADE, CONCENTRATION, Context(position_before=Decimal("300")))


# -- trading session -------------------------------------------------------------------------

SESSION = rule("trading_session")
SESSIONS = ExchangeSessions()


def test_a_trade_outside_the_venue_session_alerts() -> None:
    night = replace(TRADE, trade_time=datetime(2026, 12, 2, 22, 0, tzinfo=UTC))

    result = outcome(night, SESSION, Context(sessions=SESSIONS))

    assert not result.passed and not result.blocking
    assert result.evidence["venue"] == "XNYS"


def test_a_trade_on_an_exchange_holiday_alerts() -> None:
    christmas = replace(TRADE, trade_time=datetime(2026, 12, 25, 15, 0, tzinfo=UTC))

    assert breached(christmas, SESSION, Context(sessions=SESSIONS))


def test_a_trade_in_session_and_one_within_the_grace_after_the_close_pass() -> None:
    after_close = replace(TRADE, trade_time=datetime(2026, 12, 2, 21, 10, tzinfo=UTC))

    assert not breached(TRADE, SESSION, Context(sessions=SESSIONS))
    assert breached(after_close, SESSION, Context(sessions=SESSIONS))
    assert not breached(
        after_close, rule("trading_session", grace_minutes=15), Context(sessions=SESSIONS)
    )


def test_a_segment_mic_trades_in_its_operator_sessions_and_unknown_venues_pass() -> None:
    london_evening = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)

    assert breached(
        replace(TRADE, venue="XLON", trade_time=london_evening), SESSION, Context(sessions=SESSIONS)
    )
    assert not breached(replace(TRADE, venue="XNGS"), SESSION, Context(sessions=SESSIONS))
    unknown = outcome(replace(TRADE, venue="XOFF"), SESSION, Context(sessions=SESSIONS))
    assert unknown.passed and "no session calendar" in unknown.detail


# -- price deviation -------------------------------------------------------------------------

PRICE = rule("price_deviation", band_percent="10", max_reference_age_seconds=3600)


def last(price: str, minutes_before: int = 5) -> PricePoint:
    return PricePoint(Decimal(price), T0 - timedelta(minutes=minutes_before), "T-0")


def test_a_price_far_from_the_last_price_alerts_with_both_prices() -> None:
    result = outcome(TRADE, PRICE, Context(last_price=last("181.8")))

    assert not result.passed
    assert result.evidence["reference_price"] == "181.8"
    assert result.evidence["deviation_percent"] == "10.01"


@pytest.mark.parametrize(
    "reference",
    [
        PricePoint(Decimal("181.82"), T0, "T-0"),  # 10.00 %: inside the band
        PricePoint(Decimal("100"), T0 - timedelta(hours=2), "T-0"),  # too old to compare
        PricePoint(Decimal("100"), T0, "T-1"),  # this trade's own (older version's) price
    ],
)
def test_near_misses_of_a_price_deviation_pass(reference: PricePoint) -> None:
    assert not breached(TRADE, PRICE, Context(last_price=reference))


def test_the_first_price_seen_for_an_isin_passes() -> None:
    assert not breached(TRADE, PRICE, Context())


# -- parameters and versions -----------------------------------------------------------------


def test_parameters_are_checked_field_by_field() -> None:
    with pytest.raises(InvalidParameters) as raised:
        parse_parameters("large_trade", {"thresholds": {"EUR": "-5"}, "extra": 1})
    with pytest.raises(InvalidParameters) as currency:
        parse_parameters("large_trade", {"thresholds": {"usd": "1"}})

    assert {field for field, _ in raised.value.errors} == {
        "parameters.thresholds.EUR",
        "parameters.extra",
    }
    assert currency.value.errors[0][0] == "parameters.thresholds"
    assert "ISO 4217" in currency.value.errors[0][1]


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(UnknownRuleKind):
        parse_parameters("insider_trading", {})


def test_the_version_in_force_at_a_time_is_the_latest_effective_by_then() -> None:
    v1 = rule("large_trade", thresholds={"USD": "100"})
    v2 = replace(v1, version=2, effective_from=T0, enabled=False)

    assert in_force([v1, v2], T0 - timedelta(microseconds=1)) == [v1]
    assert in_force([v2, v1], T0) == [v2]
    assert evaluate(TRADE, in_force([v1, v2], T0), Context()) == []  # disabled from T0


@given(
    amount=st.decimals(min_value=0, max_value=10**9, places=2),
    threshold=st.decimals(min_value=Decimal("0.01"), max_value=10**9, places=2),
)
def test_a_large_trade_breaches_exactly_above_its_threshold(
    amount: Decimal, threshold: Decimal
) -> None:
    r = rule("large_trade", thresholds={"USD": str(threshold)})

    assert breached(replace(TRADE, gross_amount=amount), r) == (amount > threshold)


@given(
    before=st.decimals(min_value=-(10**6), max_value=10**6, places=0),
    quantity=st.decimals(min_value=1, max_value=10**6, places=0),
    side=st.sampled_from(["BUY", "SELL"]),
)
def test_a_position_breaches_exactly_when_its_size_after_the_trade_is_over_the_limit(
    before: Decimal, quantity: Decimal, side: str
) -> None:
    trade = replace(TRADE, side=side, quantity=quantity)
    after = before + (quantity if side == "BUY" else -quantity)

    assert breached(trade, POSITION, Context(position_before=before)) == (abs(after) > 1000)
