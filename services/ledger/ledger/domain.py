"""Journal entries for trades: balanced per unit (a currency or an ISIN), never edited.

Postings are two-phase. A trade is booked pending on trade date (what is owed each way,
client against street); when the depository settles it, a settled entry releases the
pending amounts (each pending line is reversed) and books the actual movement: on the
client's settled accounts against the accounts where the securities and the cash are,
the depository's and the custodian's (the location side of a stock record: each position
has an owner side and a location side, and they balance), so that street accounts only ever
hold open contracts. A settlement that does not say where it settled (an event from before
settlement named it) books the client's settled position against the street, as the
ledger did then, so a replay books what it booked. A partial settlement does that for the
part settled and leaves the rest pending. A pending entry that will never settle is voided
by a reversal: a cancellation, a rejection by compliance, or an amendment, which also books
the new terms pending. Nothing is ever edited. A trade the ledger has seen settle in full
keeps its books (settlement refuses such changes).

No I/O: ids and time are arguments, and what the journal holds for a trade is given as a
`Book`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal
from urllib.parse import quote

from bo_common.contracts.csd import settlement_amount

Kind = Literal["pending", "settled", "partially_settled", "reversal"]


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
    kind: Kind
    lines: tuple[Line, ...]
    # The trade version the entry books (a reversal: the version of the entry it reverses).
    version: int = 1
    # A reversal names the entry it reverses; no other entry does.
    reverses: str | None = None

    def __post_init__(self) -> None:
        if self.version < 1:
            raise LedgerError("a trade version starts at 1")
        if (self.kind == "reversal") != (self.reverses is not None):
            raise LedgerError("a reversal, and only a reversal, names the entry it reverses")
        if self.reverses == self.entry_id:
            raise LedgerError("an entry does not reverse itself")
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


def net_by_account(*entries: Entry) -> dict[tuple[str, str], Decimal]:
    """Debits less credits per (ledger account, unit), without the accounts that net to 0."""
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for entry in entries:
        for line in entry.lines:
            totals[(line.ledger_account, line.unit)] += line.debit - line.credit
    return {key: total for key, total in totals.items() if total != 0}


def trade_cash(gross_amount: Decimal, currency: str, settlement_type: str) -> Decimal:
    """The cash a trade moves: none free of payment; against payment, price x quantity
    rounded half-even to the currency's ISO 4217 minor units, exactly as settlement rounds
    the amount it instructs, so that the pending entry and what settles agree to the cent
    and no sub-unit remainder is left pending."""
    if settlement_type != "DVP":
        return Decimal(0)
    return settlement_amount(gross_amount, currency)


def effective_time(change: str, *, event_time: datetime, trade_time: datetime | None) -> datetime:
    """When an entry takes effect (what `as_of` balances are computed on): a capture on
    the trade's time (its trade date), anything else when the event that caused it
    happened (an amendment, cancellation or rejection when it was made; a settlement when
    the depository's confirmation was processed). An event that reaches the ledger late is
    posted with its earlier effective time: as-of balances for an instant after that time,
    asked after the posting, include it."""
    if change == "capture" and trade_time is not None:
        return trade_time
    return event_time


def account_owner(*parts: str) -> str:
    """The owner part of a ledger account name from its identifiers (a BIC, an account
    number): each percent-encoded (no `:` or `/` left in it, and nothing lost), joined by
    `/`. E.g. ("IRVTUS3NXXX", "SAFE-001") -> "IRVTUS3NXXX/SAFE-001"."""
    return "/".join(quote(part.strip(), safe="") for part in parts)


@dataclass(frozen=True)
class Location:
    """Where a settlement moved the securities and the cash: the depository (its BIC, the
    place of settlement) and the custodian of the SSI the instruction used (its BIC and the
    safekeeping account there). Either may be unknown, not both."""

    depository: str | None = None
    custodian_bic: str | None = None
    safekeeping_account: str | None = None

    def __post_init__(self) -> None:
        if not self.depository and not self.custodian_bic:
            raise LedgerError("a settlement location names a depository or a custodian")

    @property
    def _custodian(self) -> str | None:
        if not self.custodian_bic:
            return None
        if self.safekeeping_account:
            return f"custodian:{account_owner(self.custodian_bic, self.safekeeping_account)}"
        return f"custodian:{account_owner(self.custodian_bic)}"

    @property
    def securities_account(self) -> str:
        """`depository:<BIC>:securities`, per ISIN: what the firm holds at the depository
        (else at the custodian, `custodian:<BIC>/<safekeeping account>:securities`)."""
        if self.depository:
            return f"depository:{account_owner(self.depository)}:securities"
        return f"{self._custodian}:securities"

    @property
    def cash_account(self) -> str:
        """`custodian:<BIC>/<safekeeping account>:cash`, per currency: the cash the
        custodian holds for the firm, which pays and receives against delivery (else the
        depository's cash account, `depository:<BIC>:cash`)."""
        custodian = self._custodian
        if custodian is not None:
            return f"{custodian}:cash"
        return f"depository:{account_owner(self.depository or '')}:cash"


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
    # Where it settled (a settlement's terms); None: unknown, the street side is booked.
    location: Location | None = None


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


def pending_entry(terms: TradeTerms, *, entry_id: str, version: int = 1) -> Entry:
    return Entry(entry_id, terms.trade_id, terms.account, "pending", _pending_lines(terms), version)


def settled_lines(terms: TradeTerms) -> tuple[Line, ...]:
    """Each pending line (client and street) is reversed, and the movement is booked on
    the client's settled accounts against the location accounts (`terms.location`): a
    client buying gets the securities out of the depository account (credited: the firm
    now holds them there for the client) and pays the cash into the custodian's (debited:
    the cash paid out for the client). Without a location, each pending line is booked
    again on its settled account (client and street), as before locations were known."""
    lines: list[Line] = []
    location = terms.location
    client = f"client:{terms.account}:"
    for line in _pending_lines(terms):
        pending_account, unit = line.ledger_account, line.unit
        settled_account = pending_account.removesuffix("_pending")
        lines.append(Line(pending_account, unit, debit=line.credit, credit=line.debit))
        if location is not None and not settled_account.startswith(client):
            # The street's side of the movement settles at the location: the street's
            # pending line is released above and nothing is left on the street.
            settled_account = (
                location.securities_account
                if settled_account.endswith(":securities")
                else location.cash_account
            )
        lines.append(Line(settled_account, unit, debit=line.debit, credit=line.credit))
    return tuple(lines)


def settled_entry(terms: TradeTerms, *, entry_id: str, version: int = 1) -> Entry:
    """The pending amounts released and the movement booked where it settled (see
    `settled_lines`)."""
    return Entry(entry_id, terms.trade_id, terms.account, "settled", settled_lines(terms), version)


def reverse(entry: Entry, *, entry_id: str) -> Entry:
    """A new entry that undoes `entry`: the same lines with debit and credit swapped.

    The reversed entry is not touched. A reversal is not itself reversed: to book again
    what was reversed, post a new entry."""
    if entry.kind == "reversal":
        raise LedgerError(f"entry {entry.entry_id} is a reversal; reversals are not reversed")
    return Entry(
        entry_id,
        entry.trade_id,
        entry.account,
        "reversal",
        tuple(
            Line(line.ledger_account, line.unit, debit=line.credit, credit=line.debit)
            for line in entry.lines
        ),
        entry.version,
        reverses=entry.entry_id,
    )


# Entry ids are derived from what they book, so a redelivered event can never book twice
# (the inbox is the first guard, the primary key the second). Version 1's pending id is
# the id entries were given before trades had versions.
def pending_entry_id(trade_id: str, version: int) -> str:
    name = f"entry:{trade_id}:pending" if version == 1 else f"entry:{trade_id}:pending:{version}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def settled_entry_id(trade_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"entry:{trade_id}:settled"))


def reversal_entry_id(reversed_entry_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reversal:{reversed_entry_id}"))


@dataclass(frozen=True)
class Book:
    """What the journal holds for one trade."""

    # The highest version of the trade booked as a pending entry (reversed or not), or None.
    booked_version: int | None = None
    # The pending entry not yet reversed (the trade's current terms), if any.
    live_pending: Entry | None = None
    settled: bool = False
    cancelled: bool = False
    # Partial settlements booked so far (each moved a part from pending to settled).
    partials: tuple[Entry, ...] = ()
    # A version whose pending entry was refused by an account limit (an open exception).
    refused_version: int | None = None
    # Debit - credit of all the trade's entries on pending accounts, per (account, unit).
    pending_net: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.live_pending is not None and self.live_pending.kind != "pending":
            raise LedgerError("the live entry of a trade is a pending entry")

    @classmethod
    def of(
        cls,
        entries: Iterable[Entry],
        *,
        cancelled: bool = False,
        refused_version: int | None = None,
    ) -> Book:
        """The book of one trade from its journal entries, whether it is cancelled and
        which version an account limit refused."""
        entries = tuple(entries)
        reversed_ids = {e.reverses for e in entries if e.reverses is not None}
        pending = [e for e in entries if e.kind == "pending"]
        live = [e for e in pending if e.entry_id not in reversed_ids]
        if len(live) > 1:  # an amendment reverses the live entry before booking its own
            raise LedgerError(f"more than one unreversed pending entry: {live}")
        return cls(
            booked_version=max((e.version for e in pending), default=None),
            live_pending=live[0] if live else None,
            settled=any(e.kind == "settled" for e in entries),
            cancelled=cancelled,
            partials=tuple(e for e in entries if e.kind == "partially_settled"),
            refused_version=refused_version,
            pending_net={
                key: amount
                for key, amount in net_by_account(*entries).items()
                if key[0].endswith("_pending")
            },
        )


@dataclass(frozen=True)
class Decision:
    """The entries to post (in order), whether to record the cancellation, and, when
    nothing is posted, why."""

    entries: tuple[Entry, ...] = ()
    record_cancellation: bool = False
    skipped: str | None = None
    # Skipped because the trade has settled: worth a warning, the books keep the trade.
    refused: bool = False


def book_capture(book: Book, terms: TradeTerms, *, version: int = 1) -> Decision:
    """The trade as captured. Booked unless the trade is cancelled or a version of it is
    booked already (an amendment that arrived first supersedes it). A settlement that
    arrived first does not stop it, but then what settled is what the pending entry books:
    its lines are those that the settlement released from the pending accounts (the
    depository's terms win over a version settlement may have refused)."""
    if book.cancelled:
        return Decision(skipped="the trade is cancelled")
    if book.booked_version is not None:
        return Decision(skipped=f"version {book.booked_version} is booked already")
    if book.settled and book.pending_net:
        lines = tuple(
            Line(account, unit, debit=-amount) if amount < 0 else Line(account, unit, credit=amount)
            for (account, unit), amount in sorted(book.pending_net.items())
        )
        return Decision(
            entries=(
                Entry(
                    pending_entry_id(terms.trade_id, version),
                    terms.trade_id,
                    terms.account,
                    "pending",
                    lines,
                    version,
                ),
            )
        )
    return Decision(
        entries=(
            pending_entry(
                terms, entry_id=pending_entry_id(terms.trade_id, version), version=version
            ),
        )
    )


def book_amendment(book: Book, terms: TradeTerms, *, version: int) -> Decision:
    """Reverse the current pending entry and book the amended terms as `version`."""
    if book.settled:
        return Decision(skipped="the trade has settled; its books are not changed", refused=True)
    if book.cancelled:
        return Decision(skipped="the trade is cancelled")
    if book.booked_version is not None and version <= book.booked_version:
        return Decision(skipped=f"version {book.booked_version} is booked already")
    entries: list[Entry] = []
    if book.live_pending is not None:
        live = book.live_pending
        entries.append(reverse(live, entry_id=reversal_entry_id(live.entry_id)))
    entries.append(
        pending_entry(terms, entry_id=pending_entry_id(terms.trade_id, version), version=version)
    )
    return Decision(entries=tuple(entries))


def book_cancellation(book: Book) -> Decision:
    """Reverse the current pending entry, if any, and remember the trade is cancelled (so
    that a capture or amendment arriving later books nothing)."""
    if book.settled:
        return Decision(skipped="the trade has settled; its books are not changed", refused=True)
    if book.cancelled:
        return Decision(skipped="the trade is cancelled already")
    if book.live_pending is None:
        return Decision(record_cancellation=True)
    live = book.live_pending
    return Decision(
        entries=(reverse(live, entry_id=reversal_entry_id(live.entry_id)),),
        record_cancellation=True,
    )


def rebooked_entry_id(trade_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"entry:{trade_id}:pending:as-settled"))


def book_settlement(book: Book, terms: TradeTerms, *, settled_entry_id: str) -> Decision:
    """The settled entry, after the pending books are put to the terms that settled.

    `terms` is what this confirmation settled: the whole trade, or after partial
    settlements the last part. What settled in all (the parts and this) is compared with
    the live pending entry. When the ledger booked a change that settlement then refused
    (it came after the instruction), the live pending entry is of other terms, or there is
    none (a cancellation, or a posting an account limit refused): it is reversed and the
    settled terms are booked pending again, so that the settled entries clear them and no
    pending balance is left behind.
    """
    if book.settled:
        return Decision(skipped="the trade's settlement is booked already")
    version = book.booked_version or 1
    live = book.live_pending
    settle = terms
    total = settled_in_all(terms, book.partials)
    if (
        book.partials
        and live is not None
        and net_by_account(live) == net_by_account(pending_entry(terms, entry_id="-"))
    ):
        # The confirmation states the whole trade (a netted instruction's does), not its
        # last part: what is left after the parts settles now.
        total = terms
        settle = settled_in_all(terms, book.partials, sign=-1)
        if settle.quantity <= 0:
            return Decision(skipped="the partial settlements cover the whole trade")
    entries: list[Entry] = []
    if (book.booked_version is not None or book.refused_version is not None) and (
        live is None or net_by_account(live) != net_by_account(pending_entry(total, entry_id="-"))
    ):
        if live is not None:
            entries.append(reverse(live, entry_id=reversal_entry_id(live.entry_id)))
        version = max(version, book.refused_version or 0) + 1
        entries.append(
            pending_entry(total, entry_id=rebooked_entry_id(terms.trade_id), version=version)
        )
    entries.append(settled_entry(settle, entry_id=settled_entry_id, version=version))
    return Decision(entries=tuple(entries))


def settled_in_all(last: TradeTerms, partials: Iterable[Entry], *, sign: int = 1) -> TradeTerms:
    """The terms settled by the partial settlements and the last confirmation together
    (with `sign=-1`: the terms less the parts): each part's quantity and cash are what it
    moved off the client's pending accounts."""
    quantity, amount = last.quantity, last.amount
    securities = f"client:{last.account}:securities_pending"
    cash = f"client:{last.account}:cash_pending"
    for partial in partials:
        moved = net_by_account(partial)
        quantity += sign * abs(moved.get((securities, last.isin), Decimal(0)))
        amount += sign * abs(moved.get((cash, last.currency), Decimal(0)))
    return replace(last, quantity=quantity, amount=amount)


def partial_entry_id(trade_id: str, cause_event_id: str) -> str:
    """One partial settlement per confirmation event of the trade."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"entry:{trade_id}:partial:{cause_event_id}"))


def book_partial_settlement(book: Book, part: TradeTerms, *, entry_id: str) -> Decision:
    """The part the depository settled moves from pending to settled; the rest stays
    pending. Like a settlement, it does not need the capture to have been booked (the
    two commute)."""
    if book.settled:
        return Decision(skipped="the trade has settled in full already")
    if any(p.entry_id == entry_id for p in book.partials):
        return Decision(skipped="this partial settlement is booked already")
    lines = settled_lines(part)
    return Decision(
        entries=(
            Entry(
                entry_id,
                part.trade_id,
                part.account,
                "partially_settled",
                lines,
                book.booked_version or 1,
            ),
        )
    )
