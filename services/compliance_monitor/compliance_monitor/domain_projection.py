"""The projection's slice for a run of trade versions evaluated together, in memory.

The consume loop hands the monitor a run of trade.captured / trade.amended events at once
(a single event is a run of one). Their evaluations read the projection (trades seen,
positions, last prices) as the earlier events of the run left it, so the handler loads
once what any of them can read (`Needs`), and this slice answers each evaluation's reads
and takes its writes in order, as the stored projection would one event at a time: the
same decisions and alerts, one read and one write for the whole run. The semantics are
domain.Projection's (the replay model), checked against it in tests/unit/test_replay.py.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from compliance_monitor.domain_rules import (
    Context,
    PricePoint,
    RuleVersion,
    SeenTrade,
    TradeFacts,
    newer_price,
    signed_quantity,
    wash_lookup,
)


@dataclass(frozen=True)
class Terms:
    """The terms a trade's latest evaluated version put in the projection (none before the
    first): what a new version replaces."""

    side: str | None = None
    isin: str | None = None
    quantity: Decimal | None = None

    @property
    def counted(self) -> bool:
        return self.side is not None and self.isin is not None and self.quantity is not None


@dataclass(frozen=True)
class Parts:
    """Which parts of the projection the enabled rules read."""

    seen_accounts: frozenset[str]
    window: timedelta
    holdings: bool
    all_holdings: bool
    last: bool

    @classmethod
    def of(cls, rules: Sequence[RuleVersion], account: str) -> Parts:
        kinds = {rule.kind for rule in rules if rule.enabled}
        accounts, window_s = wash_lookup(rules, account)
        return cls(
            seen_accounts=accounts,
            window=timedelta(seconds=window_s),
            holdings=bool(kinds & {"concentration_limit", "position_limit"}),
            all_holdings="concentration_limit" in kinds,
            last="price_deviation" in kinds,
        )


@dataclass(frozen=True)
class Needs:
    """What to load for a run: the trades seen in its ISINs in this time span by these
    accounts, each on any side but the one paired with it (`seen_accounts[i]` but
    `seen_not_sides[i]`: what ProjectionSlice.context reads for a trade of that side), every
    position of its accounts, and the last prices in its currencies of its ISINs and of
    every ISIN those accounts hold."""

    isins: list[str]
    seen_accounts: list[str]
    seen_not_sides: list[str]
    seen_from: datetime | None
    seen_to: datetime | None
    accounts: list[str]
    currencies: list[str]


def needs(run: Iterable[tuple[TradeFacts, Parts]]) -> Needs:
    isins: set[str] = set()
    seen: set[tuple[str, str]] = set()
    seen_from: datetime | None = None
    seen_to: datetime | None = None
    accounts: set[str] = set()
    currencies: set[str] = set()
    for trade, parts in run:
        isins.add(trade.isin)
        accounts.add(trade.account)
        currencies.add(trade.currency)
        if parts.seen_accounts:
            seen |= {(account, trade.side) for account in parts.seen_accounts}
            low, high = trade.trade_time - parts.window, trade.trade_time + parts.window
            seen_from = low if seen_from is None else min(seen_from, low)
            seen_to = high if seen_to is None else max(seen_to, high)
    return Needs(
        isins=sorted(isins),
        seen_accounts=[account for account, _ in sorted(seen)],
        seen_not_sides=[side for _, side in sorted(seen)],
        seen_from=seen_from,
        seen_to=seen_to,
        accounts=sorted(accounts),
        currencies=sorted(currencies),
    )


class SeenTrades(MutableMapping[str, SeenTrade]):
    """Trades seen, by trade id, also kept by ISIN, account and side in trade time order: an
    evaluation reads the trades of one ISIN, a few accounts and one side within a time
    window, slices of that order, where a scan of every trade seen grew with the run and
    the window (most of the monitor's CPU in a burst)."""

    def __init__(self) -> None:
        self._by_id: dict[str, SeenTrade] = {}
        # (ISIN, account) -> side -> (trade time, trade id), in order.
        self._by_key: dict[tuple[str, str], dict[str, list[tuple[datetime, str]]]] = {}

    def __getitem__(self, trade_id: str) -> SeenTrade:
        return self._by_id[trade_id]

    def __setitem__(self, trade_id: str, seen: SeenTrade) -> None:
        if trade_id != seen.trade_id:
            raise ValueError(f"trade {seen.trade_id} filed under {trade_id}")
        if trade_id in self._by_id:
            del self[trade_id]
        self._by_id[trade_id] = seen
        sides = self._by_key.setdefault((seen.isin, seen.account), {})
        bisect.insort(sides.setdefault(seen.side, []), (seen.trade_time, trade_id))

    def __delitem__(self, trade_id: str) -> None:
        seen = self._by_id.pop(trade_id)
        order = self._by_key[(seen.isin, seen.account)][seen.side]
        del order[bisect.bisect_left(order, (seen.trade_time, trade_id))]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def within(
        self,
        isin: str,
        accounts: Iterable[str],
        low: datetime,
        high: datetime,
        *,
        not_side: str | None = None,
    ) -> Iterator[SeenTrade]:
        """The trades of the ISIN and accounts with low <= trade_time <= high, but for those
        on `not_side`: account by account, side by side, in time order."""
        for account in sorted(accounts):
            sides = self._by_key.get((isin, account), {})
            for side in sorted(sides):
                if side == not_side:
                    continue
                order = sides[side]
                for index in range(bisect.bisect_left(order, (low,)), len(order)):
                    trade_time, trade_id = order[index]
                    if trade_time > high:
                        break
                    yield self._by_id[trade_id]


@dataclass
class ProjectionSlice:
    # The current terms of every trade loaded or evaluated, not cancelled.
    seen: SeenTrades = field(default_factory=SeenTrades)
    positions: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    last_prices: dict[tuple[str, str], PricePoint] = field(default_factory=dict)
    # What the run changed, to be stored: net moves of positions (a position that any
    # version moved, even if the moves cancel out: one version alone would have made the
    # row), the last prices replaced, the latest terms and version of each trade evaluated.
    moved: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    priced: set[tuple[str, str]] = field(default_factory=set)
    evaluated: dict[str, tuple[int, TradeFacts]] = field(default_factory=dict)

    def context(self, trade: TradeFacts, before: Terms, parts: Parts, lists: Context) -> Context:
        """The lists' context (`lists`) with the projection's part for this version."""
        recent: list[SeenTrade] = []
        if parts.seen_accounts:
            # The wash trade rules are the only readers of the trades seen, and each looks
            # for trades on the other side: the trade's own side, most of a busy window
            # (an account trading one way all day), is not read at all.
            low, high = trade.trade_time - parts.window, trade.trade_time + parts.window
            recent = [
                seen
                for seen in self.seen.within(
                    trade.isin, parts.seen_accounts, low, high, not_side=trade.side
                )
                if seen.trade_id != trade.trade_id
            ]
        position = Decimal(0)
        holdings: dict[str, tuple[Decimal, Decimal]] = {}
        if parts.holdings:
            for (account, isin), quantity in self.positions.items():
                if account != trade.account:
                    continue
                if isin == trade.isin:
                    position = quantity
                elif parts.all_holdings:
                    point = self.last_prices.get((isin, trade.currency))
                    if point is not None:
                        holdings[isin] = (quantity, point.price)
        if before.counted and before.isin == trade.isin:
            # An older version of this trade is in the position: this version replaces it.
            position -= signed_quantity(before.side or "", before.quantity or Decimal(0))
        last = self.last_prices.get((trade.isin, trade.currency)) if parts.last else None
        return replace(
            lists,
            recent_trades=recent,
            position_before=position,
            other_holdings=holdings,
            last_price=last,
        )

    def apply(self, trade: TradeFacts, before: Terms, version: int) -> None:
        """The version replaces the older one's quantity and terms; its price becomes the
        last price if it is the latest seen in the ISIN (domain_rules.newer_price)."""
        moves: dict[str, Decimal] = {trade.isin: trade.signed_quantity}
        if before.counted and before.isin is not None:
            moves[before.isin] = moves.get(before.isin, Decimal(0)) - signed_quantity(
                before.side or "", before.quantity or Decimal(0)
            )
        for isin, quantity in moves.items():
            if quantity == 0:
                continue
            key = (trade.account, isin)
            self.positions[key] = self.positions.get(key, Decimal(0)) + quantity
            self.moved[key] = self.moved.get(key, Decimal(0)) + quantity
        key = (trade.isin, trade.currency)
        point = PricePoint(trade.price, trade.trade_time, trade.trade_id)
        if newer_price(self.last_prices.get(key), point):
            self.last_prices[key] = point
            self.priced.add(key)
        self.seen[trade.trade_id] = SeenTrade(
            trade.trade_id, trade.account, trade.side, trade.isin, trade.price, trade.trade_time
        )
        self.evaluated[trade.trade_id] = (version, trade)
