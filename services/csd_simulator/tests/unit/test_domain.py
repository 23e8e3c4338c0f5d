"""How the simulated depository answers a sese.023 instruction. Pure."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import bo_iso20022
from bo_iso20022 import SettlementConfirmation, SettlementInstruction, StatusAdvice
from csd_simulator.domain import Rule, answer

INSTRUCTION = SettlementInstruction(
    instruction_id="0f4c1b9e2d7a4c3b8e5f6a7b8c9d0e1f",
    movement="RECE",
    payment="APMT",
    trade_date=date(2026, 3, 3),
    settlement_date=date(2026, 3, 4),
    isin="US0378331005",
    quantity=Decimal("150"),
    settlement_amount=Decimal("27000.00"),
    currency="USD",
    depository_bic="DTCYUS33XXX",
    counterparty_lei="784F5XWPLTWKTBV3E584",
    counterparty_bic="IRVTUS3NXXX",
    safekeeping_account="SAFE-US-A-001",
    cash_account="CASH-US-A-001",
    trade_ids=("T-1",),
)
ID = INSTRUCTION.instruction_id
MATCHED = StatusAdvice(instruction_id=ID, status="matched")


def settled(
    quantity: Decimal, amount: Decimal, *, remaining: Decimal | None = None
) -> SettlementConfirmation:
    return SettlementConfirmation(
        instruction_id=ID,
        status="partially_settled" if remaining is not None else "settled",
        movement="RECE",
        payment="APMT",
        isin="US0378331005",
        settled_quantity=quantity,
        remaining_quantity=remaining,
        settled_amount=amount,
        currency="USD",
        settlement_date=date(2026, 3, 4),
        trade_ids=("T-1",),
    )


def test_without_rules_an_instruction_is_matched_then_settled_in_full() -> None:
    assert answer(INSTRUCTION, []) == [MATCHED, settled(Decimal("150"), Decimal("27000"))]


def test_every_answer_renders_into_a_schema_valid_message() -> None:
    rules_by_outcome = [
        [],
        [Rule(outcome="fail", reason="MONY")],
        [Rule(outcome="partial", settled_fraction=Decimal("0.3"))],
        [Rule(outcome="pending", reason="LACK")],
        [Rule(outcome="pending")],
    ]
    for rules in rules_by_outcome:
        for message in answer(INSTRUCTION, rules):
            if isinstance(message, StatusAdvice):
                xml = bo_iso20022.render_sese024(message)
            else:
                xml = bo_iso20022.render_sese025(message)
            bo_iso20022.validate(xml)
            assert bo_iso20022.parse(xml) == message


def test_a_matching_fail_rule_matches_then_fails_with_its_reason() -> None:
    rules = [Rule(isin="US0378331005", outcome="fail", reason="MONY")]

    assert answer(INSTRUCTION, rules) == [
        MATCHED,
        StatusAdvice(instruction_id=ID, status="failed", reason_code="MONY"),
    ]


def test_a_fail_rule_without_a_reason_fails_for_lack_of_securities() -> None:
    assert answer(INSTRUCTION, [Rule(outcome="fail")]) == [
        MATCHED,
        StatusAdvice(instruction_id=ID, status="failed", reason_code="LACK"),
    ]


@given(
    quantity=st.decimals(
        min_value=Decimal("0.00000002"), max_value=Decimal("1000000000"), places=8
    ),
    fraction=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("0.99"), places=2),
)
def test_a_partial_rule_settles_the_quantity_times_its_fraction_rounded_down(
    quantity: Decimal, fraction: Decimal
) -> None:
    instruction = dataclasses.replace(INSTRUCTION, quantity=quantity)
    rules = [Rule(account="SAFE-US-A-001", outcome="partial", settled_fraction=fraction)]

    steps = answer(instruction, rules)

    assert steps[0] == MATCHED
    confirmation = steps[1]
    assert isinstance(confirmation, SettlementConfirmation)
    expected = max(
        (quantity * fraction).quantize(Decimal("0.00000001"), rounding="ROUND_DOWN"),
        Decimal("0.00000001"),
    )
    assert confirmation.settled_quantity == expected
    if expected < quantity:
        assert confirmation.status == "partially_settled"
        assert confirmation.remaining_quantity == quantity - expected
    bo_iso20022.validate(bo_iso20022.render_sese025(confirmation))


def test_a_partial_rule_settles_half_by_default_with_the_cash_in_proportion() -> None:
    steps = answer(INSTRUCTION, [Rule(outcome="partial")])

    assert steps[-1] == settled(Decimal("75"), Decimal("13500"), remaining=Decimal("75"))


def test_a_pending_rule_gives_one_pending_step() -> None:
    rules = [Rule(counterparty_lei="784F5XWPLTWKTBV3E584", outcome="pending", reason="LACK")]

    assert answer(INSTRUCTION, rules) == [
        StatusAdvice(instruction_id=ID, status="pending", reason_code="LACK")
    ]


def test_a_match_only_rule_stops_after_matching() -> None:
    assert answer(INSTRUCTION, [Rule(outcome="match_only")]) == [MATCHED]


def test_the_first_matching_rule_wins() -> None:
    rules = [
        Rule(isin="US0378331005", outcome="pending"),
        Rule(isin="US0378331005", outcome="fail", reason="MONY"),
        Rule(outcome="settle"),
    ]

    assert answer(INSTRUCTION, rules) == [StatusAdvice(instruction_id=ID, status="pending")]


@pytest.mark.parametrize(
    "rule",
    [
        Rule(isin="GB0002634946", outcome="fail"),
        Rule(counterparty_lei="5493001KJTIIGC8Y1R12", outcome="fail"),
        Rule(account="SAFE-US-A-002", outcome="fail"),
        Rule(isin="US0378331005", account="SAFE-US-A-002", outcome="fail"),
    ],
)
def test_rules_that_do_not_match_are_ignored(rule: Rule) -> None:
    assert answer(INSTRUCTION, [rule, Rule(outcome="pending")]) == [
        StatusAdvice(instruction_id=ID, status="pending")
    ]
    assert answer(INSTRUCTION, [rule]) == answer(INSTRUCTION, [])


def test_a_rule_matches_only_when_every_field_it_sets_matches() -> None:
    rule = Rule(
        isin="US0378331005",
        counterparty_lei="784F5XWPLTWKTBV3E584",
        account="SAFE-US-A-001",
        outcome="fail",
    )

    assert rule.matches(INSTRUCTION)
    assert not rule.matches(dataclasses.replace(INSTRUCTION, safekeeping_account="SAFE-2"))


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [("fail", "NOPE"), ("pending", "CYCL"), ("settle", "LACK"), ("partial", "MONY")],
)
def test_a_rule_refuses_a_reason_that_is_not_a_code_of_its_outcome(
    outcome: str, reason: str
) -> None:
    with pytest.raises(ValidationError):
        Rule.model_validate({"outcome": outcome, "reason": reason})


# Receive/deliver WITH payment (the cash goes the same way as the securities) and payment
# free of delivery (quantity 0, cash only): the netted forms T2S calls RWP/DWP and PFOD.
RWP = dataclasses.replace(
    INSTRUCTION, quantity=Decimal("40"), settlement_amount=Decimal("5600.00"), credit_debit="CRDT"
)
PFOD = dataclasses.replace(
    INSTRUCTION,
    movement="DELI",
    quantity=Decimal(0),
    settlement_amount=Decimal("250.00"),
    credit_debit="CRDT",
)


def _round_trips(steps: list[StatusAdvice | SettlementConfirmation]) -> None:
    for message in steps:
        if isinstance(message, SettlementConfirmation):
            xml = bo_iso20022.render_sese025(message)
            bo_iso20022.validate(xml)
            assert bo_iso20022.parse(xml) == message


def test_a_receive_with_payment_settles_echoing_its_credit() -> None:
    steps = answer(bo_iso20022.parse_sese023(bo_iso20022.render_sese023(RWP)), [])

    assert steps[0] == MATCHED
    confirmation = steps[1]
    assert isinstance(confirmation, SettlementConfirmation)
    assert (confirmation.status, confirmation.movement, confirmation.credit_debit) == (
        "settled",
        "RECE",
        "CRDT",
    )
    assert (confirmation.settled_quantity, confirmation.settled_amount) == (40, Decimal("5600"))
    _round_trips(steps)


def test_a_receive_with_payment_settles_partially_with_its_cash_in_proportion() -> None:
    steps = answer(RWP, [Rule(outcome="partial")])

    confirmation = steps[-1]
    assert isinstance(confirmation, SettlementConfirmation)
    assert (confirmation.status, confirmation.settled_quantity, confirmation.settled_amount) == (
        "partially_settled",
        Decimal(20),
        Decimal("2800.00"),
    )
    assert confirmation.credit_debit == "CRDT"
    _round_trips(steps)


@pytest.mark.parametrize("rules", [[], [Rule(outcome="partial", settled_fraction=Decimal("0.3"))]])
def test_a_payment_free_of_delivery_settles_whole_with_quantity_zero(rules: list[Rule]) -> None:
    # No securities to settle a part of: a partial rule settles a PFOD whole.
    steps = answer(bo_iso20022.parse_sese023(bo_iso20022.render_sese023(PFOD)), rules)

    assert steps[0] == MATCHED
    confirmation = steps[1]
    assert isinstance(confirmation, SettlementConfirmation)
    assert (
        confirmation.status,
        confirmation.movement,
        confirmation.settled_quantity,
        confirmation.remaining_quantity,
        confirmation.settled_amount,
        confirmation.indicator,
    ) == ("settled", "DELI", Decimal(0), None, Decimal("250.00"), "CRDT")
    _round_trips(steps)
