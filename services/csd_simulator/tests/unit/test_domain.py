"""How the simulated depository answers an instruction. Pure."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bo_common.contracts.csd import CsdInstruction
from csd_simulator.domain import Rule, StatusStep, answer

INSTRUCTION = CsdInstruction(
    instruction_id="I-1",
    trade_ids=["T-1"],
    account="ACC-1",
    direction="RECEIVE",
    payment="APMT",
    isin="US0378331005",
    quantity=Decimal("150"),
    amount=Decimal("27000.00"),
    currency="USD",
    settlement_date=date(2026, 3, 4),
    depository="DTC",
    counterparty_lei="784F5XWPLTWKTBV3E584",
)


def test_without_rules_an_instruction_is_matched_then_settled_in_full() -> None:
    assert answer(INSTRUCTION, []) == [
        StatusStep("matched"),
        StatusStep("settled", settled_quantity=Decimal("150")),
    ]


def test_a_matching_fail_rule_matches_then_fails_with_its_reason() -> None:
    rules = [Rule(isin="US0378331005", outcome="fail", reason="MONY")]

    assert answer(INSTRUCTION, rules) == [StatusStep("matched"), StatusStep("failed", "MONY")]


def test_a_fail_rule_without_a_reason_fails_for_lack_of_securities() -> None:
    assert answer(INSTRUCTION, [Rule(outcome="fail")]) == [
        StatusStep("matched"),
        StatusStep("failed", "LACK"),
    ]


@given(
    quantity=st.decimals(
        min_value=Decimal("0.00000001"), max_value=Decimal("1000000000"), places=8
    ),
    fraction=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.99"), places=2),
)
def test_a_partial_rule_settles_the_quantity_times_its_fraction(
    quantity: Decimal, fraction: Decimal
) -> None:
    instruction = INSTRUCTION.model_copy(update={"quantity": quantity})
    rules = [Rule(account="ACC-1", outcome="partial", settled_fraction=fraction)]

    assert answer(instruction, rules) == [
        StatusStep("matched"),
        StatusStep("partially_settled", settled_quantity=quantity * fraction),
    ]


def test_a_partial_rule_settles_half_by_default() -> None:
    steps = answer(INSTRUCTION, [Rule(outcome="partial")])

    assert steps[-1] == StatusStep("partially_settled", settled_quantity=Decimal("75.0"))


def test_a_pending_rule_gives_one_pending_step() -> None:
    rules = [Rule(counterparty_lei="784F5XWPLTWKTBV3E584", outcome="pending", reason="CYCL")]

    assert answer(INSTRUCTION, rules) == [StatusStep("pending", "CYCL")]


def test_a_match_only_rule_stops_after_matching() -> None:
    assert answer(INSTRUCTION, [Rule(outcome="match_only")]) == [StatusStep("matched")]


def test_the_first_matching_rule_wins() -> None:
    rules = [
        Rule(isin="US0378331005", outcome="pending"),
        Rule(isin="US0378331005", outcome="fail", reason="MONY"),
        Rule(outcome="settle"),
    ]

    assert answer(INSTRUCTION, rules) == [StatusStep("pending")]


@pytest.mark.parametrize(
    "rule",
    [
        Rule(isin="GB0002634946", outcome="fail"),
        Rule(counterparty_lei="5493001KJTIIGC8Y1R12", outcome="fail"),
        Rule(account="ACC-2", outcome="fail"),
        Rule(isin="US0378331005", account="ACC-2", outcome="fail"),
    ],
)
def test_rules_that_do_not_match_are_ignored(rule: Rule) -> None:
    assert answer(INSTRUCTION, [rule, Rule(outcome="pending")]) == [StatusStep("pending")]
    assert answer(INSTRUCTION, [rule]) == answer(INSTRUCTION, [])


def test_a_rule_matches_only_when_every_field_it_sets_matches() -> None:
    rule = Rule(
        isin="US0378331005",
        counterparty_lei="784F5XWPLTWKTBV3E584",
        account="ACC-1",
        outcome="fail",
    )

    assert rule.matches(INSTRUCTION)
    assert not rule.matches(INSTRUCTION.model_copy(update={"account": "ACC-2"}))
