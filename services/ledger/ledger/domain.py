"""Journal entries for trades: balanced per unit (a currency or an ISIN), never edited.

A trade is booked twice: a pending entry on trade date (what is owed each way) and, when
the depository settles it, a settled entry that moves each pending amount to its settled
account. No I/O: ids and time are arguments.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal


class LedgerError(Exception):
    pass


class UnbalancedEntry(LedgerError):
    pass


@dataclass(frozen=True)
class Line:
    ledger_account: str
    unit: str
    debit: Decimal = Decimal(0)
    credit: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.debit < 0 or self.credit < 0:
            raise LedgerError("a line's debit and credit are never negative")
        if (self.debit == 0) == (self.credit == 0):
            raise LedgerError("a line is either a debit or a credit")


@dataclass(frozen=True)
class Entry:
    entry_id: str
    trade_id: str
    account: str
    kind: Literal["pending", "settled"]
    lines: tuple[Line, ...]

    def __post_init__(self) -> None:
        check_balanced(self.lines)


def check_balanced(lines: tuple[Line, ...]) -> None:
    if not lines:
        raise UnbalancedEntry("an entry has lines")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        totals[line.unit] += line.debit - line.credit
    off = {unit: total for unit, total in totals.items() if total != 0}
    if off:
        raise UnbalancedEntry(f"debits and credits differ by {off}")


@dataclass(frozen=True)
class TradeTerms:
    trade_id: str
    account: str
    side: Literal["BUY", "SELL"]
    isin: str
    quantity: Decimal
    amount: Decimal
    currency: str
    counterparty_lei: str


def _pending_lines(terms: TradeTerms) -> tuple[Line, ...]:
    client = f"client:{terms.account}"
    street = f"street:{terms.counterparty_lei}"
    receiver, deliverer = (client, street) if terms.side == "BUY" else (street, client)
    lines = [
        # securities flow to the buyer...
        Line(f"{receiver}:securities_pending", terms.isin, debit=terms.quantity),
        Line(f"{deliverer}:securities_pending", terms.isin, credit=terms.quantity),
    ]
    if terms.amount > 0:  # ...and cash to the seller (none for free of payment)
        lines += [
            Line(f"{deliverer}:cash_pending", terms.currency, debit=terms.amount),
            Line(f"{receiver}:cash_pending", terms.currency, credit=terms.amount),
        ]
    return tuple(lines)


def pending_entry(terms: TradeTerms, *, entry_id: str) -> Entry:
    return Entry(entry_id, terms.trade_id, terms.account, "pending", _pending_lines(terms))


def settled_entry(terms: TradeTerms, *, entry_id: str) -> Entry:
    """Each pending line is reversed and booked again on its settled account."""
    lines: list[Line] = []
    for line in _pending_lines(terms):
        settled_account = line.ledger_account.removesuffix("_pending")
        lines.append(Line(line.ledger_account, line.unit, debit=line.credit, credit=line.debit))
        lines.append(Line(settled_account, line.unit, debit=line.debit, credit=line.credit))
    return Entry(entry_id, terms.trade_id, terms.account, "settled", tuple(lines))
