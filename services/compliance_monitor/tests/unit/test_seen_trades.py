"""The trades seen, kept by ISIN, account and side in time order, answer a window's read
(all sides, or all but one) as a scan of every trade seen does, through any sequence of new
trades, replaced versions (another account, side, ISIN or time) and removals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance_monitor.domain_projection import Parts, SeenTrades, needs
from compliance_monitor.domain_rules import SeenTrade, TradeFacts

T0 = datetime(2026, 12, 2, 15, tzinfo=UTC)
ISINS = ["US0378331005", "US5949181045", "GB0002634946"]

ACCOUNTS = ["ACC-001", "ACC-002", "ACC-003"]
trades = st.builds(
    lambda n, account, side, isin, seconds: SeenTrade(
        f"T-{n}", account, side, isin, Decimal(100), T0 + timedelta(seconds=seconds)
    ),
    st.integers(0, 30),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(ISINS),
    st.integers(0, 60),
)
steps = st.lists(st.one_of(trades, st.integers(0, 30)), max_size=120)
windows = st.tuples(
    st.sampled_from(ISINS),
    st.frozensets(st.sampled_from(ACCOUNTS)),
    st.integers(-5, 65),
    st.integers(0, 30),
    st.sampled_from([None, "BUY", "SELL"]),
)


@given(steps, st.lists(windows, min_size=1, max_size=10))
def test_a_window_is_what_a_scan_finds(steps: list[SeenTrade | int], reads: list) -> None:
    kept = SeenTrades()
    model: dict[str, SeenTrade] = {}
    for step in steps:
        if isinstance(step, SeenTrade):
            kept[step.trade_id] = step
            model[step.trade_id] = step
        elif f"T-{step}" in model:
            del kept[f"T-{step}"]
            del model[f"T-{step}"]
    assert dict(kept) == model
    for isin, accounts, start, width, not_side in reads:
        low = T0 + timedelta(seconds=start)
        high = low + timedelta(seconds=width)
        found = list(kept.within(isin, accounts, low, high, not_side=not_side))
        expected = sorted(
            (
                s
                for s in model.values()
                if s.isin == isin
                and s.account in accounts
                and low <= s.trade_time <= high
                and s.side != not_side
            ),
            key=lambda s: (s.account, s.side, s.trade_time, s.trade_id),
        )
        assert found == expected


def test_a_trade_is_filed_under_its_own_id() -> None:
    kept = SeenTrades()
    with pytest.raises(ValueError, match="filed under"):
        kept["T-2"] = SeenTrade("T-1", "ACC-001", "BUY", ISINS[0], Decimal(1), T0)


def test_a_run_loads_for_each_trade_the_other_side_of_its_accounts() -> None:
    """What a run loads (needs): the trades of each wash rule account on any side but the
    trade's own, the only ones ProjectionSlice.context reads for it."""
    parts = Parts(
        seen_accounts=frozenset({"ACC-001", "ACC-002"}),
        window=timedelta(seconds=300),
        holdings=False,
        all_holdings=False,
        last=False,
    )
    buy = TradeFacts(
        trade_id="T-1",
        version=1,
        account="ACC-001",
        side="BUY",
        isin=ISINS[0],
        quantity=Decimal(100),
        price=Decimal(100),
        gross_amount=Decimal(10_000),
        currency="USD",
        counterparty_lei="784F5XWPLTWKTBV3E584",
        venue="XNYS",
        trade_time=T0,
    )
    one_side = needs([(buy, parts)])
    assert list(zip(one_side.seen_accounts, one_side.seen_not_sides, strict=True)) == [
        ("ACC-001", "BUY"),
        ("ACC-002", "BUY"),
    ]
    assert (one_side.seen_from, one_side.seen_to) == (T0 - parts.window, T0 + parts.window)
    sell = replace(buy, trade_id="T-2", side="SELL", trade_time=T0 + timedelta(seconds=60))
    both = needs([(buy, parts), (sell, parts)])
    assert len(both.seen_accounts) == 4
    assert set(zip(both.seen_accounts, both.seen_not_sides, strict=True)) == {
        (account, side) for account in ("ACC-001", "ACC-002") for side in ("BUY", "SELL")
    }
