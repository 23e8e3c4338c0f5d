"""Netting runs: invariants (hypothesis) and the worked cases of each rule."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from decimal import Decimal
from fractions import Fraction
from itertools import product
from random import Random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.netting import (
    NettingError,
    PlannedInstruction,
    ReadyObligation,
    SettlementType,
    Side,
    net,
    sendable,
)

RUN = "2b1e7c4e-5a55-4f1e-9c1f-6a0d2f3c9a10"
LEI_A = "784F5XWPLTWKTBV3E584"
LEI_B = "8I5DZWZKVSZI1NUHU748"
LEI_C = "W22LROWP2IHZNBB6K528"
APPLE = "US0378331005"
VODAFONE = "GB00BH4HKS39"
DAY = date(2026, 11, 23)
NEXT_DAY = date(2026, 11, 24)


def obligation(
    trade_id: str,
    side: Side,
    quantity: str,
    amount: str,
    *,
    counterparty_lei: str = LEI_A,
    isin: str = APPLE,
    currency: str = "USD",
    settlement_date: date = DAY,
    ssi_id: int = 1,
    settlement_type: SettlementType = "DVP",
    netting_off: bool = False,
    account: str = "ACC-001",
) -> ReadyObligation:
    return ReadyObligation(
        trade_id=trade_id,
        account=account,
        counterparty_lei=counterparty_lei,
        isin=isin,
        currency=currency,
        settlement_date=settlement_date,
        ssi_id=ssi_id,
        side=side,
        quantity=Decimal(quantity),
        amount=Decimal(amount),
        settlement_type=settlement_type,
        netting_off=netting_off,
    )


# --- hypothesis: invariants -----------------------------------------------------------

# Each example picks a few group profiles and draws its obligations from them, so that
# groups with several members, exact offsets and payment-only nets are common; one draw picks
# all the discrete terms of an obligation, which keeps generation fast.
SIDES: list[Side] = ["BUY", "SELL"]
SETTLEMENT_TYPES: list[SettlementType] = ["DVP", "FOP"]
GROUPS = list(
    product(
        [LEI_A, LEI_B, LEI_C],
        [APPLE, VODAFONE],
        ["USD", "GBP"],
        [DAY, NEXT_DAY],
        [1, 2],
        SETTLEMENT_TYPES,
    )
)
SIDES_AND_ACCOUNTS = list(product(SIDES, ["ACC-001", "ACC-002"]))
decimals = st.builds(
    lambda units, places: Decimal(units).scaleb(-places),
    st.integers(min_value=1, max_value=10**20),
    st.integers(min_value=0, max_value=8),
)
# Mostly a few round values (so that quantities offset), sometimes any size and scale.
round_quantities = st.sampled_from([Decimal(10), Decimal("10.00"), Decimal("2.5")])
quantities = st.one_of(round_quantities, round_quantities, round_quantities, decimals)
round_amounts = st.sampled_from([Decimal(0), Decimal(100), Decimal("100.0"), Decimal("0.01")])
amounts = st.one_of(round_amounts, round_amounts, decimals)


@st.composite
def obligation_lists(draw: st.DrawFn) -> list[ReadyObligation]:
    gross_counterparties = draw(st.sets(st.sampled_from([LEI_A, LEI_B, LEI_C])))
    groups = draw(st.lists(st.sampled_from(GROUPS), min_size=1, max_size=4, unique=True))
    # In a balanced group every obligation comes with its mirror (the other side, the same
    # quantity, the same or another amount): its securities net to zero.
    balanced = draw(st.sets(st.sampled_from(groups)))
    terms = draw(
        st.lists(
            st.tuples(
                st.sampled_from(groups),
                st.sampled_from(SIDES_AND_ACCOUNTS),
                quantities,
                amounts,
                st.one_of(st.none(), amounts),
            ),
            max_size=20,
        )
    )
    result: list[ReadyObligation] = []
    for group, (side, account), quantity, amount, mirror_amount in terms:
        legs: list[tuple[Side, Decimal]] = [(side, amount)]
        if group in balanced:
            legs.append(
                (
                    "SELL" if side == "BUY" else "BUY",
                    amount if mirror_amount is None else mirror_amount,
                )
            )
        lei, isin, currency, settle_on, ssi_id, settlement_type = group
        result += [
            ReadyObligation(
                trade_id=f"T{len(result) + n:03d}",
                account=account,
                counterparty_lei=lei,
                isin=isin,
                currency=currency,
                settlement_date=settle_on,
                ssi_id=ssi_id,
                side=leg_side,
                quantity=quantity,
                amount=leg_amount,
                settlement_type=settlement_type,
                netting_off=lei in gross_counterparties,
            )
            for n, (leg_side, leg_amount) in enumerate(legs)
        ]
    return result


def fraction_totals(
    pairs: list[tuple[tuple[str, str, str], Decimal, Decimal]],
) -> dict[tuple[str, str, str], tuple[Fraction, Fraction]]:
    """Exact sums (Fractions, so no decimal context can round them) per key."""
    totals: defaultdict[tuple[str, str, str], tuple[Fraction, Fraction]] = defaultdict(
        lambda: (Fraction(0), Fraction(0))
    )
    for key, quantity, amount in pairs:
        q, c = totals[key]
        totals[key] = (q + Fraction(quantity), c + Fraction(amount))
    return dict(totals)


# The signs, written out again here rather than taken from the module under test.
def firm_receives(o: ReadyObligation) -> Decimal:
    return o.quantity if o.side == "BUY" else o.quantity.copy_negate()


def firm_pays(o: ReadyObligation) -> Decimal:
    if o.settlement_type == "FOP":
        return Decimal(0)
    return o.amount if o.side == "BUY" else o.amount.copy_negate()


def instruction_receives(i: PlannedInstruction) -> Decimal:
    return i.quantity.copy_negate() if i.direction == "DELIVER" else i.quantity


def instruction_pays(i: PlannedInstruction) -> Decimal:
    return i.amount.copy_negate() if i.credit_debit == "CRDT" else i.amount


def group_of(o: ReadyObligation) -> tuple[object, ...]:
    return (
        o.counterparty_lei,
        o.isin,
        o.currency,
        o.settlement_date,
        o.ssi_id,
        o.settlement_type,
    )


def exact(instructions: list[PlannedInstruction]) -> list[tuple[object, ...]]:
    """Each instruction with its Decimals as strings, so that a change of scale shows."""
    return [
        (i.instruction_id, i.kind, i.direction, i.payment, str(i.quantity), str(i.amount), i)
        for i in instructions
    ]


@settings(max_examples=100, deadline=None)
@given(obligation_lists())
def test_netting_preserves_total_quantity_and_cash_per_counterparty_isin_currency(
    obligations: list[ReadyObligation],
) -> None:
    instructions = net(obligations, run_id=RUN)

    before = fraction_totals(
        [
            ((o.counterparty_lei, o.isin, o.currency), firm_receives(o), firm_pays(o))
            for o in obligations
        ]
    )
    after = fraction_totals(
        [
            (
                (i.key.counterparty_lei, i.key.isin, i.key.currency),
                instruction_receives(i),
                instruction_pays(i),
            )
            for i in instructions
        ]
    )
    assert after == before


@settings(max_examples=100, deadline=None)
@given(obligation_lists())
def test_every_trade_is_covered_by_exactly_one_instruction_of_its_own_group(
    obligations: list[ReadyObligation],
) -> None:
    instructions = net(obligations, run_id=RUN)
    by_trade = {o.trade_id: o for o in obligations}

    covered = Counter(t for i in instructions for t in i.trade_ids)
    assert covered == Counter(o.trade_id for o in obligations)
    for i in instructions:
        assert list(i.trade_ids) == sorted(i.trade_ids)
        assert {group_of(by_trade[t]) for t in i.trade_ids} == {tuple(i.key)}
        assert i.accounts == tuple(sorted({by_trade[t].account for t in i.trade_ids}))
    assert len({i.instruction_id for i in instructions}) == len(instructions)


@settings(max_examples=100, deadline=None)
@given(obligation_lists())
def test_gross_counterparties_get_one_instruction_per_trade_and_others_one_per_group(
    obligations: list[ReadyObligation],
) -> None:
    instructions = net(obligations, run_id=RUN)
    by_trade = {o.trade_id: o for o in obligations}

    gross = [i for i in instructions if i.gross]
    assert sorted(t for i in gross for t in i.trade_ids) == sorted(
        o.trade_id for o in obligations if o.netting_off
    )
    for i in gross:
        assert len(i.trade_ids) == 1
        only = by_trade[i.trade_ids[0]]
        assert i.kind == "securities"
        assert instruction_receives(i) == firm_receives(only)
        assert instruction_pays(i) == firm_pays(only)
    netted = [i for i in instructions if not i.gross]
    assert len({i.key for i in netted}) == len(netted)
    assert {tuple(i.key) for i in netted} == {group_of(o) for o in obligations if not o.netting_off}


@settings(max_examples=100, deadline=None)
@given(obligation_lists())
def test_instruction_fields_follow_the_signs_of_the_nets(
    obligations: list[ReadyObligation],
) -> None:
    for i in net(obligations, run_id=RUN):
        assert (i.net_quantity, i.net_cash) == (instruction_receives(i), instruction_pays(i))
        assert i.quantity >= 0
        assert i.amount >= 0
        assert (i.direction is None) == (i.quantity == 0)
        if i.kind == "securities":
            assert i.quantity > 0
        elif i.kind == "payment_only":
            assert i.quantity == 0
            assert i.amount > 0
        else:
            assert i.quantity == 0
            assert i.amount == 0
        if i.key.settlement_type == "FOP":
            assert (i.payment, i.amount, i.credit_debit) == ("FREE", Decimal(0), None)
        assert (i.payment == "APMT") == (i.amount != 0)
        assert (i.credit_debit is None) == (i.payment == "FREE")
        # What its sese.023 names: every instruction but a netted_out one is sent.
        assert (i.movement is None) == (i.kind == "netted_out")
        if i.kind == "payment_only":
            assert i.movement == ("RECEIVE" if i.credit_debit == "DBIT" else "DELIVER")
        assert sendable(i)


@settings(max_examples=100, deadline=None)
@given(obligation_lists(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order_and_a_rerun_gives_the_same_ids(
    obligations: list[ReadyObligation], random: Random
) -> None:
    first = net(obligations, run_id=RUN)
    shuffled = list(obligations)
    random.shuffle(shuffled)

    assert exact(net(shuffled, run_id=RUN)) == exact(first)
    assert [i.instruction_id for i in net(obligations, run_id=RUN)] == [
        i.instruction_id for i in first
    ]
    other_run = net(obligations, run_id="another-run")
    assert not {i.instruction_id for i in other_run} & {i.instruction_id for i in first}


# --- examples -------------------------------------------------------------------------


def test_a_buy_of_100_and_a_sell_of_60_net_to_a_receive_of_40_paying_the_difference() -> None:
    [only] = net(
        [
            obligation("T1", "BUY", "100", "18925.00"),
            obligation("T2", "SELL", "60", "11400.00", account="ACC-002"),
        ],
        run_id=RUN,
    )
    assert only.kind == "securities"
    assert (only.direction, only.quantity) == ("RECEIVE", Decimal(40))
    assert (only.payment, only.amount, only.credit_debit) == ("APMT", Decimal("7525.00"), "DBIT")
    assert str(only.amount) == "7525.00"
    assert only.trade_ids == ("T1", "T2")
    assert only.accounts == ("ACC-001", "ACC-002")
    assert not only.gross


def test_a_receive_can_come_with_cash_paid_to_the_firm() -> None:
    [only] = net(
        [obligation("T1", "BUY", "100", "100"), obligation("T2", "SELL", "60", "600")],
        run_id=RUN,
    )
    assert (only.direction, only.quantity) == ("RECEIVE", Decimal(40))
    assert (only.payment, only.amount, only.credit_debit) == ("APMT", Decimal(500), "CRDT")
    assert (only.net_quantity, only.net_cash) == (Decimal(40), Decimal(-500))


def test_a_net_delivery_is_paid_the_cash_difference() -> None:
    [only] = net(
        [obligation("T1", "SELL", "100", "1000"), obligation("T2", "BUY", "30", "270")],
        run_id=RUN,
    )
    assert (only.direction, only.quantity) == ("DELIVER", Decimal(70))
    assert (only.payment, only.amount, only.credit_debit) == ("APMT", Decimal(730), "CRDT")


def test_the_same_quantity_bought_and_sold_at_different_prices_is_a_payment_only() -> None:
    [only] = net(
        [obligation("T1", "BUY", "100", "10000.00"), obligation("T2", "SELL", "100", "10250.00")],
        run_id=RUN,
    )
    assert only.kind == "payment_only"
    assert (only.direction, only.quantity) == (None, Decimal(0))
    assert (only.payment, only.amount, only.credit_debit) == ("APMT", Decimal(250), "CRDT")
    # Sent as a payment free of delivery; the firm is paid, so the movement is DELIVER.
    assert only.movement == "DELIVER"
    assert only.trade_ids == ("T1", "T2")


def test_an_exact_offset_is_netted_out_with_nothing_to_send_but_covers_its_trades() -> None:
    [only] = net(
        [obligation("T1", "BUY", "100", "10000.00"), obligation("T2", "SELL", "100.0", "10000")],
        run_id=RUN,
    )
    assert only.kind == "netted_out"
    assert (only.direction, only.quantity, only.amount) == (None, Decimal(0), Decimal(0))
    assert (only.payment, only.credit_debit) == ("FREE", None)
    assert only.trade_ids == ("T1", "T2")


def test_dvp_whose_cash_nets_to_zero_moves_the_securities_free() -> None:
    [only] = net(
        [obligation("T1", "BUY", "100", "1000"), obligation("T2", "SELL", "50", "1000")],
        run_id=RUN,
    )
    assert (only.kind, only.direction, only.quantity) == ("securities", "RECEIVE", Decimal(50))
    assert (only.payment, only.amount, only.credit_debit) == ("FREE", Decimal(0), None)


def test_fop_nets_quantities_and_moves_no_cash() -> None:
    [only] = net(
        [
            obligation("T1", "BUY", "100", "1000", settlement_type="FOP"),
            obligation("T2", "SELL", "60", "900", settlement_type="FOP"),
        ],
        run_id=RUN,
    )
    assert (only.direction, only.quantity) == ("RECEIVE", Decimal(40))
    assert (only.payment, only.amount, only.credit_debit) == ("FREE", Decimal(0), None)


def test_different_settlement_dates_never_net() -> None:
    instructions = net(
        [
            obligation("T1", "BUY", "100", "1000"),
            obligation("T2", "SELL", "100", "1000", settlement_date=NEXT_DAY),
        ],
        run_id=RUN,
    )
    assert [(i.trade_ids, i.direction, i.quantity) for i in instructions] == [
        (("T1",), "RECEIVE", Decimal(100)),
        (("T2",), "DELIVER", Decimal(100)),
    ]
    assert not any(i.gross for i in instructions)


def test_fop_and_dvp_never_net() -> None:
    instructions = net(
        [
            obligation("T1", "BUY", "100", "1000", settlement_type="DVP"),
            obligation("T2", "SELL", "100", "1000", settlement_type="FOP"),
        ],
        run_id=RUN,
    )
    assert [(i.trade_ids, i.direction, i.payment) for i in instructions] == [
        (("T1",), "RECEIVE", "APMT"),
        (("T2",), "DELIVER", "FREE"),
    ]


def test_different_ssis_counterparties_isins_or_currencies_never_net() -> None:
    base = obligation("T0", "BUY", "100", "1000")
    others = [
        obligation("T1", "SELL", "100", "1000", ssi_id=2),
        obligation("T2", "SELL", "100", "1000", counterparty_lei=LEI_B),
        obligation("T3", "SELL", "100", "1000", isin=VODAFONE),
        obligation("T4", "SELL", "100", "1000", currency="EUR"),
    ]
    instructions = net([base, *others], run_id=RUN)
    assert sorted(i.trade_ids for i in instructions) == [(f"T{n}",) for n in range(5)]


def test_netting_switched_off_settles_gross_one_instruction_per_trade() -> None:
    instructions = net(
        [
            obligation("T1", "BUY", "100", "1000", netting_off=True),
            obligation("T2", "SELL", "60", "600", netting_off=True),
            obligation("T3", "SELL", "100", "1000", netting_off=True),
        ],
        run_id=RUN,
    )
    assert [
        (i.trade_ids, i.gross, i.direction, i.quantity, i.credit_debit) for i in instructions
    ] == [
        (("T1",), True, "RECEIVE", Decimal(100), "DBIT"),
        (("T2",), True, "DELIVER", Decimal(60), "CRDT"),
        (("T3",), True, "DELIVER", Decimal(100), "CRDT"),
    ]
    assert len({i.instruction_id for i in instructions}) == 3


def test_instruction_ids_come_from_the_run_and_the_group_or_the_trade() -> None:
    netted = obligation("T1", "BUY", "100", "1000")
    gross = obligation("T2", "BUY", "100", "1000", counterparty_lei=LEI_B, netting_off=True)
    first = net([netted, gross], run_id=RUN)
    # The group's id does not depend on which trades it holds; the gross id on its trade.
    again = net([netted, obligation("T3", "BUY", "5", "50"), gross], run_id=RUN)
    assert [i.instruction_id for i in again] == [i.instruction_id for i in first]


def test_amounts_keep_their_scale_and_are_exact_beyond_28_digits() -> None:
    [only] = net(
        [
            obligation(
                "T1", "BUY", "12345678901234567890.12345678", "99999999999999999999.99999999"
            ),
            obligation("T2", "SELL", "0.00000001", "0.00000001"),
        ],
        run_id=RUN,
    )
    assert str(only.quantity) == "12345678901234567890.12345677"
    assert str(only.amount) == "99999999999999999999.99999998"
    [big] = net(
        [
            obligation("T1", "BUY", "99999999999999999999.99999999", "1"),
            obligation("T2", "BUY", "99999999999999999999.99999999", "1"),
        ],
        run_id=RUN,
    )
    assert str(big.quantity) == "199999999999999999999.99999998"


def test_nothing_to_net_gives_no_instructions() -> None:
    assert net([], run_id=RUN) == []


@pytest.mark.parametrize(
    ("side", "quantity", "amount", "settlement_type"),
    [
        ("SHORT", "1", "1", "DVP"),
        ("BUY", "1", "1", "RVP"),
        ("BUY", "0", "1", "DVP"),
        ("SELL", "-1", "1", "DVP"),
        ("BUY", "NaN", "1", "DVP"),
        ("BUY", "1", "-0.01", "DVP"),
        ("BUY", "1", "Infinity", "DVP"),
    ],
)
def test_an_invalid_obligation_is_refused(
    side: Any, quantity: str, amount: str, settlement_type: Any
) -> None:
    with pytest.raises(NettingError, match="T1"):
        obligation("T1", side, quantity, amount, settlement_type=settlement_type)


def test_the_same_trade_twice_is_refused() -> None:
    with pytest.raises(NettingError, match="T1"):
        net(
            [obligation("T1", "BUY", "1", "1"), obligation("T1", "SELL", "1", "1")],
            run_id=RUN,
        )
