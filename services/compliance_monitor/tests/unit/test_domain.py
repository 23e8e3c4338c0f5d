"""Pre-settlement compliance rules. Pure."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from compliance_monitor.domain import Outcome, Rule, TradeFacts, UnknownRule, evaluate, held

TRADE = TradeFacts(
    trade_id="T-1",
    account="ACC-1",
    side="BUY",
    isin="US0378331005",
    quantity=Decimal("100"),
    gross_amount=Decimal("1000000"),
    currency="USD",
    counterparty_lei="784F5XWPLTWKTBV3E584",
)

NOTIONAL = Rule(
    name="notional",
    kind="notional_limit",
    parameters={"limits": {"USD": 1_000_000, "EUR": "500000.00"}, "default_limit": 250_000},
)
RESTRICTED = Rule(name="restricted", kind="restricted_list", parameters={})


def trade(gross_amount: str, currency: str = "USD", isin: str = TRADE.isin) -> TradeFacts:
    return replace(TRADE, gross_amount=Decimal(gross_amount), currency=currency, isin=isin)


def passes(facts: TradeFacts, rule: Rule, restricted: frozenset[str] = frozenset()) -> bool:
    [outcome] = evaluate(facts, [rule], restricted)
    assert outcome.rule == rule.name
    return outcome.passed


@pytest.mark.parametrize(
    ("gross_amount", "currency", "expected"),
    [
        ("999999.99", "USD", True),
        ("1000000", "USD", True),
        ("1000000.01", "USD", False),
        ("500000.00", "EUR", True),
        ("500000.01", "EUR", False),
    ],
)
def test_a_trade_passes_the_notional_limit_of_its_currency_up_to_and_including_it(
    gross_amount: str, currency: str, expected: bool
) -> None:
    assert passes(trade(gross_amount, currency), NOTIONAL) is expected


@pytest.mark.parametrize(
    ("gross_amount", "expected"), [("250000", True), ("250000.01", False), ("600000", False)]
)
def test_a_currency_without_its_own_limit_uses_the_default_limit(
    gross_amount: str, expected: bool
) -> None:
    assert passes(trade(gross_amount, "GBP"), NOTIONAL) is expected


def test_a_currency_without_its_own_or_a_default_limit_has_no_notional_limit() -> None:
    rule = Rule("notional", "notional_limit", {"limits": {"USD": 1}})

    [outcome] = evaluate(trade("1000000000", "JPY"), [rule], frozenset())

    assert outcome.passed
    assert "no notional limit" in outcome.detail


def test_a_breach_of_the_notional_limit_says_by_how_much() -> None:
    [outcome] = evaluate(trade("1000000.01"), [NOTIONAL], frozenset())

    assert outcome == Outcome(
        "notional",
        False,
        "gross amount 1000000.01 USD exceeds the limit of 1000000 USD",
    )


def test_a_security_on_the_restricted_list_fails_the_restricted_list_rule() -> None:
    assert not passes(TRADE, RESTRICTED, frozenset({"US0378331005", "GB0002634946"}))


def test_a_security_not_on_the_restricted_list_passes_it() -> None:
    assert passes(TRADE, RESTRICTED, frozenset({"GB0002634946"}))
    assert passes(TRADE, RESTRICTED, frozenset())


def test_every_rule_gives_one_outcome_named_after_it_in_order() -> None:
    outcomes = evaluate(trade("2000000"), [RESTRICTED, NOTIONAL], frozenset())

    assert [(o.rule, o.passed) for o in outcomes] == [("restricted", True), ("notional", False)]


def test_a_rule_of_an_unknown_kind_is_refused() -> None:
    rules = [NOTIONAL, Rule("mystery", "sanctions_screen", {})]

    with pytest.raises(UnknownRule, match="sanctions_screen"):
        evaluate(TRADE, rules, frozenset())


def test_a_trade_is_held_when_any_rule_fails() -> None:
    assert held([Outcome("a", True, ""), Outcome("b", False, ""), Outcome("c", True, "")])


def test_a_trade_is_not_held_when_every_rule_passes_or_there_are_none() -> None:
    assert not held([Outcome("a", True, ""), Outcome("b", True, "")])
    assert not held([])


def test_a_restricted_trade_within_its_limit_is_held() -> None:
    outcomes = evaluate(TRADE, [NOTIONAL, RESTRICTED], frozenset({TRADE.isin}))

    assert held(outcomes)
