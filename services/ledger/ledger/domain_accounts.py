"""The chart of accounts, a client's balances per asset, and account limits.

Ledger accounts are named `<owner type>:<owner>:<class>[_pending]` and hold one unit each
(a currency or an ISIN), so an account of the chart is a (name, unit) pair, created the
first time a line books on it:
- `client:<account>:cash|securities[_pending]`, per currency and per ISIN: what the client
  holds (settled) or is owed/owes by trades not yet settled (pending);
- `street:<counterparty LEI>:...`: the other side of each trade until it settles (its open
  contracts); after settlement only when the settlement did not say where it settled;
- `depository:<depository BIC>:securities`, per ISIN (and `...:cash` when no custodian is
  known): where the securities are, the firm's account at the depository (the CSD);
- `custodian:<custodian BIC>/<safekeeping account>:cash`, per currency (and
  `...:securities` when no depository is known): the cash at the custodian of the SSI
  the settlement used;
- `firm:<name>:...`: the firm's own accounts.
An owner made of identifiers has each percent-encoded (`domain.account_owner`), so it never
holds a `:`.

Sign convention: an amount is debit minus credit. A debit increases what the owner of the
account holds, so a client's long position or cash is a debit balance (normal side debit),
and the street, which delivers against the client, normally carries credit balances.
Depository and custodian accounts are the location side of a stock record: every settled
position has an owner (a client) and a location, and the two balance. A location account
holds the firm's assets on behalf of its owners, so it carries the opposite sign to them:
normal side credit, and its credit balance reads as what is held there (1,000 shares of an
ISIN on clients' settled accounts are a 1,000 credit on the depository's account for it).

No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from ledger.domain import Entry, LedgerError

AccountType = Literal["client", "counterparty", "depository", "custodian", "firm"]
NormalSide = Literal["debit", "credit"]
AssetClass = Literal["cash", "securities"]
Phase = Literal["settled", "pending"]

_TYPES: dict[str, tuple[AccountType, NormalSide]] = {
    "client": ("client", "debit"),
    "street": ("counterparty", "credit"),
    "depository": ("depository", "credit"),
    "custodian": ("custodian", "credit"),
    "firm": ("firm", "debit"),
}


@dataclass(frozen=True)
class ChartAccount:
    ledger_account: str
    unit: str
    account_type: AccountType
    normal_side: NormalSide
    owner: str
    asset_class: AssetClass
    phase: Phase


def chart_account(ledger_account: str, unit: str) -> ChartAccount:
    """The chart entry of a ledger account name and unit (the name says everything)."""
    parts = ledger_account.split(":")
    if len(parts) != 3 or parts[0] not in _TYPES or not parts[1]:
        raise LedgerError(f"not a ledger account name: {ledger_account!r}")
    prefix, owner, kind = parts
    phase: Phase = "pending" if kind.endswith("_pending") else "settled"
    asset = kind.removesuffix("_pending")
    if asset not in ("cash", "securities"):
        raise LedgerError(f"not an asset class: {asset!r} in {ledger_account!r}")
    account_type, normal_side = _TYPES[prefix]
    return ChartAccount(
        ledger_account=ledger_account,
        unit=unit,
        account_type=account_type,
        normal_side=normal_side,
        owner=owner,
        asset_class="cash" if asset == "cash" else "securities",
        phase=phase,
    )


def client_account_names(account: str) -> tuple[str, ...]:
    return tuple(
        f"client:{account}:{kind}"
        for kind in ("cash", "cash_pending", "securities", "securities_pending")
    )


@dataclass(frozen=True)
class AssetBalance:
    """One asset of a client: settled (settlement-date view), pending (traded, not yet
    settled), and the two together (the trade-date position)."""

    unit: str
    asset_class: AssetClass
    settled: Decimal
    pending: Decimal

    @property
    def position(self) -> Decimal:
        return self.settled + self.pending


def asset_balances(
    amounts: Iterable[tuple[str, str, Decimal]],
) -> list[AssetBalance]:
    """A client's balances per asset from (ledger account, unit, debit - credit) rows of
    its accounts, in unit order."""
    by_unit: dict[str, tuple[AssetClass, Decimal, Decimal]] = {}
    for ledger_account, unit, amount in amounts:
        chart = chart_account(ledger_account, unit)
        asset_class, settled, pending = by_unit.get(
            unit, (chart.asset_class, Decimal(0), Decimal(0))
        )
        if chart.phase == "settled":
            settled += amount
        else:
            pending += amount
        by_unit[unit] = (asset_class, settled, pending)
    return [
        AssetBalance(unit, asset_class, settled, pending)
        for unit, (asset_class, settled, pending) in sorted(by_unit.items())
    ]


@dataclass(frozen=True)
class Limit:
    """The lowest trade-date position (settled + pending) a client account may have in a
    unit: 0 on a currency means no overdraft, 0 on an ISIN no short sale."""

    account: str
    unit: str
    min_position: Decimal


@dataclass(frozen=True)
class Breach:
    account: str
    unit: str
    min_position: Decimal
    position_before: Decimal
    position_after: Decimal


def position_changes(account: str, entries: Iterable[Entry]) -> dict[str, Decimal]:
    """How the entries move the client account's trade-date position, per unit."""
    names = set(client_account_names(account))
    changes: dict[str, Decimal] = {}
    for entry in entries:
        for line in entry.lines:
            if line.ledger_account in names:
                changes[line.unit] = changes.get(line.unit, Decimal(0)) + line.debit - line.credit
    return changes


def limit_breaches(
    account: str,
    entries: Iterable[Entry],
    *,
    positions: Mapping[str, Decimal],
    limits: Mapping[str, Limit],
) -> list[Breach]:
    """The limits the entries, posted together, would breach. A posting that lowers a
    position below its limit breaches it; one that raises a position (even one already
    below its limit, e.g. after the limit was set) never does."""
    breaches = []
    for unit, change in sorted(position_changes(account, entries).items()):
        limit = limits.get(unit)
        if limit is None or change >= 0:
            continue
        before = positions.get(unit, Decimal(0))
        after = before + change
        if after < limit.min_position:
            breaches.append(Breach(account, unit, limit.min_position, before, after))
    return breaches
