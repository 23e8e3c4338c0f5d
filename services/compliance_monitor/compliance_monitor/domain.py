"""Pre-settlement compliance rules. Each rule is a pure function of the trade and its
parameters; a trade that fails any rule is held and raises an alert. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


class ComplianceError(Exception):
    pass


class UnknownRule(ComplianceError):
    pass


@dataclass(frozen=True)
class TradeFacts:
    trade_id: str
    account: str
    side: str
    isin: str
    quantity: Decimal
    gross_amount: Decimal
    currency: str
    counterparty_lei: str


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    rule: str
    passed: bool
    detail: str


def _notional_limit(
    trade: TradeFacts, parameters: Mapping[str, Any], restricted: frozenset[str]
) -> Outcome:
    limits = parameters.get("limits", {})
    limit = limits.get(trade.currency, parameters.get("default_limit"))
    if limit is None:
        return Outcome("", True, f"no notional limit for {trade.currency}")
    limit_amount = Decimal(str(limit))
    if trade.gross_amount > limit_amount:
        return Outcome(
            "",
            False,
            f"gross amount {trade.gross_amount} {trade.currency} exceeds the limit "
            f"of {limit_amount} {trade.currency}",
        )
    return Outcome("", True, f"within {limit_amount} {trade.currency}")


def _restricted_list(
    trade: TradeFacts, parameters: Mapping[str, Any], restricted: frozenset[str]
) -> Outcome:
    if trade.isin in restricted:
        return Outcome("", False, f"{trade.isin} is on the restricted list")
    return Outcome("", True, "not restricted")


RULE_KINDS: dict[str, Callable[[TradeFacts, Mapping[str, Any], frozenset[str]], Outcome]] = {
    "notional_limit": _notional_limit,
    "restricted_list": _restricted_list,
}


def evaluate(trade: TradeFacts, rules: list[Rule], restricted: frozenset[str]) -> list[Outcome]:
    outcomes = []
    for rule in rules:
        check = RULE_KINDS.get(rule.kind)
        if check is None:
            raise UnknownRule(f"rule '{rule.name}' has unknown kind '{rule.kind}'")
        result = check(trade, rule.parameters, restricted)
        outcomes.append(Outcome(rule.name, result.passed, result.detail))
    return outcomes


def held(outcomes: list[Outcome]) -> bool:
    return any(not o.passed for o in outcomes)
