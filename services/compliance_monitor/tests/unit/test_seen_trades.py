"""The trades seen, kept by ISIN and account in time order, answer a window's read as a
scan of every trade seen does, through any sequence of new trades, replaced versions
(another account, ISIN or time) and removals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance_monitor.domain_projection import SeenTrades
from compliance_monitor.domain_rules import SeenTrade

T0 = datetime(2026, 12, 2, 15, tzinfo=UTC)
ISINS = ["US0378331005", "US5949181045", "GB0002634946"]

ACCOUNTS = ["ACC-001", "ACC-002", "ACC-003"]
trades = st.builds(
    lambda n, account, isin, seconds: SeenTrade(
        f"T-{n}", account, "BUY", isin, Decimal(100), T0 + timedelta(seconds=seconds)
    ),
    st.integers(0, 30),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(ISINS),
    st.integers(0, 60),
)
steps = st.lists(st.one_of(trades, st.integers(0, 30)), max_size=120)
windows = st.tuples(
    st.sampled_from(ISINS),
    st.frozensets(st.sampled_from(ACCOUNTS)),
    st.integers(-5, 65),
    st.integers(0, 30),
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
    for isin, accounts, start, width in reads:
        low = T0 + timedelta(seconds=start)
        high = low + timedelta(seconds=width)
        found = list(kept.within(isin, accounts, low, high))
        expected = sorted(
            (
                s
                for s in model.values()
                if s.isin == isin and s.account in accounts and low <= s.trade_time <= high
            ),
            key=lambda s: (s.account, s.trade_time, s.trade_id),
        )
        assert found == expected


def test_a_trade_is_filed_under_its_own_id() -> None:
    kept = SeenTrades()
    with pytest.raises(ValueError, match="filed under"):
        kept["T-2"] = SeenTrade("T-1", "ACC-001", "BUY", ISINS[0], Decimal(1), T0)
