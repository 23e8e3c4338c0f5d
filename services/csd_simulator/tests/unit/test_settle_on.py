"""When the simulated depository settles: on receipt, or on the intended settlement date.
The decision is pure (domain); the store of kept instructions is a file."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import bo_iso20022
from bo_iso20022 import SettlementConfirmation, SettlementInstruction, StatusAdvice
from csd_simulator.domain import Rule, Simulation, is_due, receive, settle_due
from csd_simulator.main import PendingStore

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
MATCHED = StatusAdvice(instruction_id=INSTRUCTION.instruction_id, status="matched")

ISD = INSTRUCTION.settlement_date  # 2026-03-04
DAY = timedelta(days=1)


@given(today=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)))
def test_due_on_and_after_the_intended_settlement_date_only(today: date) -> None:
    assert is_due(INSTRUCTION, "intended_date", today) == (today >= ISD)
    assert is_due(INSTRUCTION, "receipt", today)


def test_the_day_before_is_not_due_the_day_itself_and_later_are() -> None:
    assert not is_due(INSTRUCTION, "intended_date", ISD - DAY)
    assert is_due(INSTRUCTION, "intended_date", ISD)
    assert is_due(INSTRUCTION, "intended_date", ISD + 3 * DAY)


def test_on_receipt_mode_answers_in_full_at_once_and_keeps_nothing() -> None:
    steps, keep = receive(INSTRUCTION, [], "receipt", ISD - 5 * DAY)

    assert not keep
    assert [s.status for s in steps] == ["matched", "settled"]


def test_before_its_date_an_instruction_is_matched_and_kept() -> None:
    assert receive(INSTRUCTION, [], "intended_date", ISD - DAY) == ([MATCHED], True)


def test_on_or_after_its_date_an_instruction_settles_at_once() -> None:
    for today in (ISD, ISD + DAY):
        steps, keep = receive(INSTRUCTION, [], "intended_date", today)
        assert not keep
        assert steps == receive(INSTRUCTION, [], "receipt", today)[0]


@pytest.mark.parametrize("outcome", ["pending", "match_only"])
def test_an_instruction_that_would_not_settle_is_not_kept(outcome: str) -> None:
    rules = [Rule.model_validate({"outcome": outcome})]

    steps, keep = receive(INSTRUCTION, rules, "intended_date", ISD - DAY)

    assert not keep
    assert steps == receive(INSTRUCTION, rules, "receipt", ISD)[0]


def test_a_kept_instruction_with_no_rule_settles_in_full_when_due() -> None:
    (confirmation,) = settle_due(INSTRUCTION, [])

    assert isinstance(confirmation, SettlementConfirmation)
    assert (confirmation.status, confirmation.settled_quantity) == ("settled", INSTRUCTION.quantity)
    assert confirmation.settlement_date == ISD


def test_a_kept_instruction_follows_the_rules_in_force_when_it_is_due() -> None:
    assert settle_due(INSTRUCTION, [Rule(outcome="fail", reason="MONY")]) == [
        StatusAdvice(instruction_id=INSTRUCTION.instruction_id, status="failed", reason_code="MONY")
    ]
    (partial,) = settle_due(INSTRUCTION, [Rule(outcome="partial")])
    assert isinstance(partial, SettlementConfirmation)
    assert partial.status == "partially_settled"
    assert settle_due(INSTRUCTION, [Rule(outcome="match_only")]) == []
    assert settle_due(INSTRUCTION, [Rule(outcome="pending", reason="LACK")]) == [
        StatusAdvice(
            instruction_id=INSTRUCTION.instruction_id, status="pending", reason_code="LACK"
        )
    ]


def test_matched_now_and_settled_later_render_the_same_bytes_as_at_once() -> None:
    now, _ = receive(INSTRUCTION, [], "intended_date", ISD - DAY)
    later = settle_due(INSTRUCTION, [])
    at_once, _ = receive(INSTRUCTION, [], "receipt", ISD - DAY)

    def render(message: StatusAdvice | SettlementConfirmation) -> bytes:
        if isinstance(message, StatusAdvice):
            return bo_iso20022.render_sese024(message)
        return bo_iso20022.render_sese025(message)

    assert [render(m) for m in now + later] == [render(m) for m in at_once]
    for message in now + later:
        bo_iso20022.validate(render(message))


def test_the_rules_document_takes_rules_settle_on_and_as_of() -> None:
    document = Simulation.model_validate(
        {"rules": [{"outcome": "fail"}], "settle_on": "intended_date", "as_of": "2026-03-04"}
    )

    assert document.settle_on == "intended_date"
    assert document.as_of == ISD
    assert Simulation().settle_on is None and Simulation().as_of is None
    with pytest.raises(ValidationError):
        Simulation.model_validate({"settle_on": "tomorrow"})


def test_the_pending_store_keeps_instructions_across_instances_and_clears_its_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "csd" / "pending.json"
    raw = bo_iso20022.render_sese023(INSTRUCTION)

    PendingStore(path).save({INSTRUCTION.instruction_id: raw})
    loaded = PendingStore(path).load()

    assert loaded == {INSTRUCTION.instruction_id: raw}
    assert bo_iso20022.parse_sese023(loaded[INSTRUCTION.instruction_id]) == INSTRUCTION
    PendingStore(path).save({})
    assert not path.exists()
    assert PendingStore(path).load() == {}
