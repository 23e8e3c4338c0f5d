"""What a partially settled instruction has settled so far and what stays open."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from settlement.domain import remaining_quantity, settled_so_far

quantities = st.decimals(min_value="0.00000001", max_value="1000000", places=8)


def test_a_partial_settles_the_confirmed_quantity_and_cash_and_leaves_the_rest_open() -> None:
    quantity, amount = settled_so_far(
        instructed_quantity=Decimal(1000),
        instructed_amount=Decimal("61255.00"),
        before_quantity=Decimal(0),
        before_amount=Decimal(0),
        confirmed_quantity=Decimal(400),
        confirmed_amount=Decimal("24502.00"),
        in_full=False,
    )
    assert (quantity, amount) == (Decimal(400), Decimal("24502.00"))
    assert remaining_quantity(Decimal(1000), quantity) == 600


def test_free_of_payment_cash_follows_the_quantity_and_full_settlement_settles_all() -> None:
    quantity, amount = settled_so_far(
        instructed_quantity=Decimal(100),
        instructed_amount=Decimal(0),
        before_quantity=Decimal(0),
        before_amount=Decimal(0),
        confirmed_quantity=Decimal(25),
        confirmed_amount=None,
        in_full=False,
    )
    assert (quantity, amount) == (Decimal(25), Decimal(0))
    assert settled_so_far(
        instructed_quantity=Decimal(100),
        instructed_amount=Decimal("5000"),
        before_quantity=Decimal(25),
        before_amount=Decimal("1250"),
        confirmed_quantity=Decimal(75),
        confirmed_amount=Decimal("3750"),
        in_full=True,
    ) == (Decimal(100), Decimal("5000"))


@given(
    instructed=quantities,
    price=st.decimals(min_value="0.01", max_value="10000", places=2),
    fractions=st.lists(st.decimals(min_value="0", max_value="1", places=4), max_size=6),
)
def test_successive_partials_never_settle_more_than_instructed(
    instructed: Decimal, price: Decimal, fractions: list[Decimal]
) -> None:
    instructed_amount = instructed * price
    settled, cash = Decimal(0), Decimal(0)
    for fraction in fractions:
        part = (remaining_quantity(instructed, settled) * fraction).quantize(Decimal("1e-8"))
        before = settled
        settled, cash = settled_so_far(
            instructed_quantity=instructed,
            instructed_amount=instructed_amount,
            before_quantity=settled,
            before_amount=cash,
            confirmed_quantity=part,
            confirmed_amount=None,
            in_full=False,
        )
        assert before <= settled <= instructed
        assert Decimal(0) <= cash <= instructed_amount
        assert remaining_quantity(instructed, settled) == instructed - settled
    assert settled_so_far(
        instructed_quantity=instructed,
        instructed_amount=instructed_amount,
        before_quantity=settled,
        before_amount=cash,
        confirmed_quantity=instructed - settled,
        confirmed_amount=None,
        in_full=True,
    ) == (instructed, instructed_amount)
