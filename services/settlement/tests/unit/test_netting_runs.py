"""What a netting run sends (plan_run, sendable), the pro-rata split of a partial
settlement of a netted instruction, and the shares each covered trade settles."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.handlers import CsdStatus, covered_shares
from settlement.netting import NettingError, ReadyObligation, plan_run, pro_rata, sendable

RUN = "2b1e7c4e-5a55-4f1e-9c1f-6a0d2f3c9a10"


def obligation(
    trade_id: str, side: Any, quantity: str, amount: str, *, netting_off: bool = False
) -> ReadyObligation:
    return ReadyObligation(
        trade_id=trade_id,
        account="ACC-001",
        counterparty_lei="784F5XWPLTWKTBV3E584",
        isin="US0378331005",
        currency="USD",
        settlement_date=date(2026, 11, 23),
        ssi_id=1,
        side=side,
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        settlement_type="DVP",
        netting_off=netting_off,
    )


STEP = Decimal("0.00000001")
CENT = Decimal("0.01")


def test_buy_100_sell_60_is_one_receive_40_against_payment() -> None:
    [only] = plan_run(
        [obligation("t1", "BUY", "100", "1000.00"), obligation("t2", "SELL", "60", "600.00")],
        run_id=RUN,
    )
    assert (only.kind, only.direction, only.payment, only.credit_debit) == (
        "securities",
        "RECEIVE",
        "APMT",
        "DBIT",
    )
    assert (only.quantity, only.amount, only.trade_ids) == (
        Decimal("40"),
        Decimal("400.00"),
        ("t1", "t2"),
    )
    assert sendable(only)


def test_cash_with_the_movement_is_one_receive_with_payment() -> None:
    # Receive 40 and be paid 100: one RECE with CdtDbtInd CRDT (T2S RWP), not gross.
    given_ = [obligation("t1", "BUY", "100", "500.00"), obligation("t2", "SELL", "60", "600.00")]
    [only] = plan_run(given_, run_id=RUN)
    assert (only.kind, only.gross, only.trade_ids) == ("securities", False, ("t1", "t2"))
    assert (only.direction, only.movement, only.quantity) == ("RECEIVE", "RECEIVE", Decimal(40))
    assert (only.payment, only.amount, only.credit_debit) == ("APMT", Decimal("100.00"), "CRDT")
    assert sendable(only)


def test_deliver_and_pay_is_one_deliver_with_payment() -> None:
    given_ = [obligation("t1", "BUY", "60", "900.00"), obligation("t2", "SELL", "100", "500.00")]
    [only] = plan_run(given_, run_id=RUN)
    assert (only.kind, only.gross, only.movement, only.quantity) == (
        "securities",
        False,
        "DELIVER",
        Decimal(40),
    )
    assert (only.payment, only.amount, only.credit_debit) == ("APMT", Decimal("400.00"), "DBIT")
    assert sendable(only)


@pytest.mark.parametrize(
    ("bought_at", "sold_at", "credit_debit", "movement"),
    [("100.00", "90.00", "DBIT", "RECEIVE"), ("90.00", "100.00", "CRDT", "DELIVER")],
)
def test_payment_only_is_one_payment_free_of_delivery(
    bought_at: str, sold_at: str, credit_debit: str, movement: str
) -> None:
    # The same quantity bought and sold at different prices: cash only, sent as a PFOD
    # whose movement is RECEIVE when the firm pays and DELIVER when it is paid.
    [only] = plan_run(
        [obligation("t1", "BUY", "10", bought_at), obligation("t2", "SELL", "10", sold_at)],
        run_id=RUN,
    )
    assert (only.kind, only.gross, only.trade_ids) == ("payment_only", False, ("t1", "t2"))
    assert (only.direction, only.quantity, only.payment, only.amount) == (
        None,
        Decimal(0),
        "APMT",
        Decimal("10.00"),
    )
    assert (only.credit_debit, only.movement) == (credit_debit, movement)
    assert sendable(only)


def test_netted_out_sends_nothing() -> None:
    [netted_out] = plan_run(
        [obligation("t1", "BUY", "10", "100.00"), obligation("t2", "SELL", "10", "100.00")],
        run_id=RUN,
    )
    assert netted_out.kind == "netted_out" and sendable(netted_out)
    assert netted_out.movement is None


def test_netting_off_is_gross() -> None:
    planned = plan_run(
        [
            obligation("t1", "BUY", "100", "1000.00", netting_off=True),
            obligation("t2", "SELL", "60", "600.00", netting_off=True),
        ],
        run_id=RUN,
    )
    assert [(p.trade_ids, p.gross) for p in planned] == [(("t1",), True), (("t2",), True)]


sides = st.sampled_from(["BUY", "SELL"])
quantities = st.integers(min_value=1, max_value=10**6).map(Decimal)
prices = st.integers(min_value=0, max_value=10**6).map(lambda c: Decimal(c) / 100)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(sides, quantities, prices), min_size=1, max_size=12))
def test_plan_run_covers_every_trade_once_and_keeps_the_nets(trades: list[Any]) -> None:
    given_ = [
        obligation(f"t{i:02}", side, str(q), str((q * p).quantize(CENT)))
        for i, (side, q, p) in enumerate(trades)
    ]
    planned = plan_run(given_, run_id=RUN)
    assert Counter(t for p in planned for t in p.trade_ids) == Counter(o.trade_id for o in given_)
    assert all(sendable(p) for p in planned)
    # No fallback to gross: one instruction per group, and they all share one group here.
    assert len(planned) == 1 and not planned[0].gross
    assert sum(p.net_quantity for p in planned) == sum(o.signed_quantity for o in given_)
    assert sum(p.net_cash for p in planned) == sum(o.signed_cash for o in given_)


def test_pro_rata_worked_case() -> None:
    assert pro_rata(Decimal("10"), [Decimal(1)] * 3, Decimal(1)) == [3, 3, 4]
    assert pro_rata(Decimal("0.10"), [Decimal(1), Decimal(2)], CENT) == [
        Decimal("0.03"),
        Decimal("0.07"),
    ]


@pytest.mark.parametrize(
    ("total", "weights"),
    [(Decimal("1"), []), (Decimal("1"), [Decimal(0)]), (Decimal("-1"), [Decimal(1)])],
)
def test_pro_rata_refuses(total: Decimal, weights: list[Decimal]) -> None:
    with pytest.raises(NettingError):
        pro_rata(total, weights, Decimal(1))


@settings(max_examples=500, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=20).filter(
        lambda w: sum(w) > 0
    ),
    st.sampled_from([STEP, CENT, Decimal(1)]),
)
def test_pro_rata_preserves_the_total(total: int, weights: list[int], step: Decimal) -> None:
    total_d = Decimal(total) * step
    weights_d = [Decimal(w) * STEP for w in weights]
    shares = pro_rata(total_d, weights_d, step)
    assert sum(shares) == total_d
    assert len(shares) == len(weights)
    whole = sum(weights_d)
    for share, weight in zip(shares, weights_d, strict=True):
        assert share >= 0 and share % step == 0
        exact = total_d * weight / whole
        assert abs(share - exact) <= step * len(weights)


def row(trade_id: str, side: str, quantity: str, amount: str) -> Any:
    return SimpleNamespace(
        trade_id=trade_id,
        side=side,
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        currency="USD",
        settlement_type="DVP",
    )


def test_a_netted_instruction_settled_in_full_settles_each_trade_on_its_own_terms() -> None:
    instruction: Any = SimpleNamespace(quantity=Decimal("40"), currency="USD")
    rows = [row("t1", "BUY", "100", "1000.004"), row("t2", "SELL", "60", "600")]
    shares = covered_shares(instruction, rows, CsdStatus("i", "settled"))
    assert shares == {
        "t1": (Decimal("100"), Decimal("1000.00")),
        "t2": (Decimal("60"), Decimal("600.00")),
    }


def test_a_partial_netted_instruction_splits_pro_rata_with_the_remainder_on_the_last() -> None:
    # 10 of a net 40 settled: a quarter of each trade (gross 160 -> 40, cash 1600 -> 400).
    instruction: Any = SimpleNamespace(quantity=Decimal("40"), currency="USD")
    rows = [row("t1", "BUY", "100", "1000"), row("t2", "SELL", "60", "600")]
    status = CsdStatus("i", "partially_settled", settled_quantity=Decimal("10"))
    assert covered_shares(instruction, rows, status) == {
        "t1": (Decimal("25.00000000"), Decimal("250.00")),
        "t2": (Decimal("15.00000000"), Decimal("150.00")),
    }
    # A third: 160/3 and 1600/3 are rounded down; the remainder goes on the last trade.
    status = CsdStatus("i", "partially_settled", settled_quantity=Decimal("40") / 3)
    shares = covered_shares(instruction, rows, status)
    assert sum(q for q, _ in shares.values()) == Decimal("53.33333333")
    assert sum(a for _, a in shares.values()) == Decimal("533.33")


def test_a_payment_free_of_delivery_settled_in_full_settles_each_trade_on_its_own_terms() -> None:
    instruction: Any = SimpleNamespace(quantity=Decimal(0), amount=Decimal("10"), currency="USD")
    rows = [row("t1", "BUY", "100", "1000"), row("t2", "SELL", "100", "990")]
    status = CsdStatus("i", "settled", settled_quantity=Decimal(0), settled_amount=Decimal(10))
    assert covered_shares(instruction, rows, status) == {
        "t1": (Decimal("100"), Decimal("1000.00")),
        "t2": (Decimal("100"), Decimal("990.00")),
    }


def test_a_partial_payment_free_of_delivery_splits_by_its_cash_not_by_a_zero_quantity() -> None:
    # Quantity 0: no securities fraction to divide by; a partial payment is a cash fraction.
    instruction: Any = SimpleNamespace(quantity=Decimal(0), amount=Decimal("10"), currency="USD")
    rows = [row("t1", "BUY", "100", "1000"), row("t2", "SELL", "100", "990")]
    half = CsdStatus(
        "i", "partially_settled", settled_quantity=Decimal(0), settled_amount=Decimal(5)
    )
    assert covered_shares(instruction, rows, half) == {
        "t1": (Decimal("50.00000000"), Decimal("500.00")),
        "t2": (Decimal("50.00000000"), Decimal("495.00")),
    }
    no_cash = CsdStatus("i", "partially_settled", settled_quantity=Decimal(0))
    assert covered_shares(instruction, rows, no_cash)["t1"] == (Decimal(100), Decimal("1000.00"))
