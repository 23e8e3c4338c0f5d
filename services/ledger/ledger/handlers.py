"""Ledger use cases: book a trade's pending entry on capture, void and rebook it on
amendment, void it on cancellation or on a rejection by compliance, and book its settled
(or partially settled) entry on settlement.

Pending and settled entries are independent, so capture and settlement may arrive in either
order. The events of one trade on trade.events arrive in order (they are keyed by account),
and each handler also copes with a late or repeated one: what the journal already holds for
the trade (`domain.Book`) decides what, if anything, is booked. The handlers of one client
account are serialised by a transaction-level advisory lock, so two replicas (one reading
trade.events, one settlement.events) cannot both book from the same stale view, and a limit
is checked against a position no one else is changing.

Set-based: a handler only parses its event and queues the change in the unit of work.
When the unit of work flushes (the consume loop flushes a batch inside its savepoint, or,
after a failure, each message inside its own), the queued changes are applied together:
one statement locks their accounts (in name order, so replicas cannot deadlock), one reads
the books of their trades, one the accounts' limits and balances, then every change is
decided in arrival order in memory by the domain code (each seeing the entries decided
before it), and one statement writes all the entries, lines and new chart accounts (the
database's trigger checks every entry's balance and keeps the balance projections). A
batch of hundreds of events costs a handful of statements instead of a few each.

ledger.posted carries the balance after its entry of every account it changed: for the
client's accounts, the balances read plus the lines decided before (exact: every posting
to a client's accounts holds that account's lock); for the shared street accounts, one
read after the write (see `_announce`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from bo_common.contracts import compliance as compliance_contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import ledger as contract
from bo_common.contracts import settlement as settlement_contract
from bo_common.contracts._base import EventData
from bo_common.envelope import Envelope, new_event
from bo_common.logs import get_logger
from bo_common.outbox import Outbox
from bo_common.topics import LEDGER_EVENTS
from bo_common.unit_of_work import UnitOfWork
from ledger import domain
from ledger.domain_accounts import (
    Breach,
    Limit,
    chart_account,
    client_account_names,
    limit_breaches,
)
from ledger.tables import CancellationRow, ExceptionRow

log = get_logger(__name__)

# Published by compliance_monitor on compliance.events when two officers reject a held
# trade, and by settlement for each part a depository settles (not yet named by its
# contract module).
TRADE_REJECTED = compliance_contract.TRADE_REJECTED
PARTIALLY_SETTLED = "settlement.partially_settled"


class TradeRejected(EventData):
    """What the ledger reads of compliance.trade_rejected (a `HoldDecided`): a rejection
    cancels the trade downstream, so the ledger voids its pending entries as for a
    cancellation. Only these fields, so that the ledger does not depend on the rest."""

    trade_id: str
    account: str
    version: int = 1
    reason: str = "rejected by compliance"


def _terms(trade: gateway_contract.TradeCaptured) -> domain.TradeTerms:
    return domain.TradeTerms(
        trade_id=trade.trade_id,
        account=trade.account,
        side=trade.side,
        isin=trade.isin,
        quantity=trade.quantity,
        amount=domain.trade_cash(trade.gross_amount, trade.currency, trade.settlement_type),
        currency=trade.currency,
        counterparty_lei=trade.counterparty_lei,
    )


def _settled_terms(settled: settlement_contract.SettlementSettled) -> domain.TradeTerms:
    return domain.TradeTerms(
        trade_id=settled.trade_id,
        account=settled.account,
        side=settled.side,
        isin=settled.isin,
        quantity=settled.quantity,
        amount=settled.amount,
        currency=settled.currency,
        counterparty_lei=settled.counterparty_lei,
        location=(
            domain.Location(
                depository=settled.depository,
                custodian_bic=settled.custodian_bic,
                safekeeping_account=settled.safekeeping_account,
            )
            if settled.depository or settled.custodian_bic
            else None
        ),
    )


# --- handlers: parse and queue -------------------------------------------------------

ChangeKind = Literal["capture", "amend", "void", "settle", "partial"]


@dataclass(frozen=True)
class _Change:
    kind: ChangeKind
    event: Envelope
    account: str
    trade_id: str
    version: int
    terms: domain.TradeTerms | None = None
    trade_time: datetime | None = None
    reason: str = ""


async def post_trade_capture(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeCaptured.model_validate(event.data)
    _queue(uow).append(
        _Change("capture", event, trade.account, trade.trade_id, trade.version, _terms(trade),
                trade_time=trade.trade_time)
    )  # fmt: skip


async def post_trade_amendment(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeAmended.model_validate(event.data)
    _queue(uow).append(
        _Change("amend", event, trade.account, trade.trade_id, trade.version, _terms(trade))
    )


async def post_trade_cancellation(event: Envelope, uow: UnitOfWork) -> None:
    cancelled = gateway_contract.TradeCancelled.model_validate(event.data)
    _queue(uow).append(
        _Change("void", event, cancelled.account, cancelled.trade_id, cancelled.version,
                reason=cancelled.reason)
    )  # fmt: skip


async def post_trade_rejection(event: Envelope, uow: UnitOfWork) -> None:
    rejected = TradeRejected.model_validate(event.data)
    _queue(uow).append(
        _Change("void", event, rejected.account, rejected.trade_id, rejected.version,
                reason=f"rejected by compliance: {rejected.reason}")
    )  # fmt: skip


async def post_settlement(event: Envelope, uow: UnitOfWork) -> None:
    settled = settlement_contract.SettlementSettled.model_validate(event.data)
    _queue(uow).append(
        _Change("settle", event, settled.account, settled.trade_id, 0, _settled_terms(settled))
    )


async def post_partial_settlement(event: Envelope, uow: UnitOfWork) -> None:
    part = settlement_contract.SettlementSettled.model_validate(event.data)
    _queue(uow).append(
        _Change("partial", event, part.account, part.trade_id, 0, _settled_terms(part))
    )


class _LedgerOutbox(Outbox):
    """The unit of work's outbox, which also holds the ledger changes queued since the last
    flush and applies them first when it flushes. The consume loop discards what a failed
    attempt queued with `discard`, as it does for events."""

    def __init__(self, inner: Outbox, uow: UnitOfWork) -> None:
        self._inner = inner
        self._uow = uow
        self.changes: list[_Change] = []

    def put(self, event: Envelope, *, topic: str, key: str | None) -> None:
        self._inner.put(event, topic=topic, key=key)

    def put_raw(
        self, *, event_id: Any, event_type: str, topic: str, key: str | None, payload: bytes
    ) -> None:
        self._inner.put_raw(
            event_id=event_id, event_type=event_type, topic=topic, key=key, payload=payload
        )

    def insert_later(self, table: sa.TableClause, row: dict[str, Any]) -> None:
        self._inner.insert_later(table, row)

    def mark(self) -> tuple[int, int]:
        return self._inner.mark()

    def discard(self, since: tuple[int, int]) -> None:
        # Changes are applied at every flush, and the loop marks before an attempt and
        # flushes at its end: what is queued at a discard is the failed attempt's.
        self.changes.clear()
        self._inner.discard(since)

    async def flush(self) -> None:
        changes, self.changes = self.changes, []
        if changes:
            await _apply_changes(self._uow, changes)
        await self._inner.flush()


def _queue(uow: UnitOfWork) -> list[_Change]:
    outbox = uow.outbox
    if not isinstance(outbox, _LedgerOutbox):
        outbox = _LedgerOutbox(outbox, uow)
        uow.outbox = outbox
    return outbox.changes


# --- applying a batch of changes -----------------------------------------------------


@dataclass
class _Trade:
    entries: list[domain.Entry] = field(default_factory=list)
    cancelled: bool = False
    refused_version: int | None = None

    def book(self) -> domain.Book:
        return domain.Book.of(
            self.entries, cancelled=self.cancelled, refused_version=self.refused_version
        )


@dataclass
class _Account:
    account: str
    limits: dict[str, Limit] = field(default_factory=dict)
    # The client account's balances (debit - credit) per (ledger account, unit).
    balances: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def positions(self) -> dict[str, Decimal]:
        """Trade-date position (settled + pending) per unit."""
        totals: dict[str, Decimal] = {}
        for (_, unit), balance in self.balances.items():
            totals[unit] = totals.get(unit, Decimal(0)) + balance
        return totals


_LOCK = sa.text(
    "SELECT count(pg_advisory_xact_lock(hashtextextended('ledger:' || a, 0))) "
    "FROM (SELECT a FROM unnest(CAST(:accounts AS text[])) AS a ORDER BY a) AS ordered"
)

_TRADES = sa.text(
    """
    SELECT t.trade_id,
      EXISTS (SELECT 1 FROM trade_cancellations c WHERE c.trade_id = t.trade_id),
      (SELECT max(x.version) FROM ledger_exceptions x WHERE x.trade_id = t.trade_id),
      (SELECT json_agg(json_build_array(
                e.entry_id, e.kind, e.version, e.reverses, e.account,
                (SELECT json_agg(json_build_array(l.ledger_account, l.unit, l.debit::text,
                                                  l.credit::text) ORDER BY l.line_no)
                 FROM journal_lines l WHERE l.entry_id = e.entry_id)) ORDER BY e.seq)
       FROM journal_entries e WHERE e.trade_id = t.trade_id)
    FROM unnest(CAST(:trade_ids AS text[])) AS t(trade_id)
    """
)

_ACCOUNTS = sa.text(
    """
    SELECT a.account,
      (SELECT json_agg(json_build_array(l.unit, l.min_position::text))
       FROM account_limits l WHERE l.account = a.account),
      (SELECT json_agg(json_build_array(b.ledger_account, b.unit, b.balance::text))
       FROM account_balances b
       WHERE b.ledger_account IN ('client:' || a.account || '\\:cash',
                                  'client:' || a.account || '\\:cash_pending',
                                  'client:' || a.account || '\\:securities',
                                  'client:' || a.account || '\\:securities_pending'))
    FROM unnest(CAST(:accounts AS text[])) AS a(account)
    """
)


def _json(value: Any) -> list[Any]:
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


async def _load(
    uow: UnitOfWork, changes: Sequence[_Change]
) -> tuple[dict[str, _Trade], dict[str, _Account]]:
    """The books of the changes' trades and their accounts' limits and balances, read
    under the accounts' locks."""
    session = uow.session
    accounts = sorted({c.account for c in changes})
    await session.execute(_LOCK, {"accounts": accounts})
    trades: dict[str, _Trade] = {}
    rows = await session.execute(_TRADES, {"trade_ids": sorted({c.trade_id for c in changes})})
    for trade_id, cancelled, refused, entries in rows:
        trades[trade_id] = _Trade(
            entries=[
                domain.Entry(
                    entry_id=entry_id,
                    trade_id=trade_id,
                    account=entry_account,
                    kind=kind,
                    lines=tuple(
                        domain.Line(a, u, debit=Decimal(d), credit=Decimal(c))
                        for a, u, d, c in lines
                    ),
                    version=version,
                    reverses=reverses,
                )
                for entry_id, kind, version, reverses, entry_account, lines in _json(entries)
            ],
            cancelled=cancelled,
            refused_version=refused,
        )
    by_account: dict[str, _Account] = {}
    for account, limits, balances in await session.execute(_ACCOUNTS, {"accounts": accounts}):
        by_account[account] = _Account(
            account,
            limits={u: Limit(account, u, Decimal(m)) for u, m in _json(limits)},
            balances={(a, u): Decimal(b) for a, u, b in _json(balances)},
        )
    return trades, by_account


@dataclass
class _Writes:
    """What a batch writes: entries with their cause and effective time, cancellations,
    exceptions."""

    entries: list[tuple[domain.Entry, Envelope, datetime]] = field(default_factory=list)
    cancellations: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    # The events to publish, in the order of the changes: a posted entry (with the client
    # balances after it) or a ready envelope (a refusal).
    announcements: list[_Posted | Envelope] = field(default_factory=list)


@dataclass(frozen=True)
class _Posted:
    entry: domain.Entry
    cause: Envelope
    effective_at: datetime
    client_balances: dict[tuple[str, str], Decimal]


def _decide(change: _Change, book: domain.Book) -> domain.Decision:
    terms = change.terms
    if change.kind == "void":
        return domain.book_cancellation(book)
    if terms is None:
        raise domain.LedgerError(f"a {change.kind} carries the trade's terms")
    if change.kind == "capture":
        return domain.book_capture(book, terms, version=change.version)
    if change.kind == "amend":
        return domain.book_amendment(book, terms, version=change.version)
    if change.kind == "settle":
        return domain.book_settlement(
            book, terms, settled_entry_id=domain.settled_entry_id(change.trade_id)
        )
    return domain.book_partial_settlement(
        book, terms, entry_id=domain.partial_entry_id(change.trade_id, str(change.event.id))
    )


async def _apply_changes(uow: UnitOfWork, changes: Sequence[_Change]) -> None:
    trades, accounts = await _load(uow, changes)
    writes = _Writes()
    now = datetime.now(UTC)
    for change in changes:
        trade = trades[change.trade_id]
        account = accounts[change.account]
        book = trade.book()
        decision = _decide(change, book)
        version = change.version or book.booked_version or 1
        if decision.skipped is not None:
            _log_skipped(change, decision, version)
            continue
        if change.kind == "settle" and len(decision.entries) > 1:
            # A change the ledger booked that settlement refused (it reached settlement
            # after the instruction), or a posting a limit refused: the books follow what
            # the depository settled.
            log.warning(
                "ledger_rebooked_as_settled",
                trade_id=change.trade_id,
                booked_version=book.booked_version,
                cancelled=book.cancelled,
                refused_version=book.refused_version,
            )
        if change.kind in ("capture", "amend") and account.limits and not book.settled:
            # New contractual terms are what a limit stops; voids and settlements are facts
            # (the trade will not settle, or the depository has settled it) and always post.
            breaches = limit_breaches(
                change.account,
                decision.entries,
                positions=account.positions(),
                limits=account.limits,
            )
            if breaches:
                _refuse(uow, writes, change, decision, breaches, now=now)
                trade.refused_version = max(trade.refused_version or 0, change.version)
                continue
        effective_at = domain.effective_time(
            "capture" if change.kind == "capture" else change.kind,
            event_time=change.event.time,
            trade_time=change.trade_time,
        )
        for entry in decision.entries:
            trade.entries.append(entry)
            writes.entries.append((entry, change.event, effective_at))
            writes.announcements.append(_posted(account, entry, change.event, effective_at))
        if decision.record_cancellation:
            trade.cancelled = True
            writes.cancellations.append(
                {
                    "trade_id": change.trade_id,
                    "account": change.account,
                    "version": change.version,
                    "reason": change.reason,
                    "event_id": str(change.event.id),
                    "recorded_at": now,
                }
            )
    await _write(uow, writes, now=now)
    await _announce(uow, writes, now=now)


def _log_skipped(change: _Change, decision: domain.Decision, version: int) -> None:
    if decision.refused:
        # Settlement refuses such a change too (settlement.change_refused).
        log.warning(
            "ledger_change_not_booked",
            trade_id=change.trade_id,
            change=change.kind,
            version=version,
            reason=decision.skipped,
        )
    else:
        log.info(
            "ledger_nothing_to_book",
            trade_id=change.trade_id,
            change=change.kind,
            version=version,
            reason=decision.skipped,
        )


def _posted(
    account: _Account, entry: domain.Entry, cause: Envelope, effective_at: datetime
) -> _Posted:
    """The entry with the client account's balances right after it."""
    client_names = set(client_account_names(account.account))
    touched: dict[tuple[str, str], Decimal] = {}
    for line in entry.lines:
        if line.ledger_account in client_names:
            key = (line.ledger_account, line.unit)
            account.balances[key] = account.balances.get(key, Decimal(0)) + line.debit - line.credit
            touched[key] = account.balances[key]
    return _Posted(entry, cause, effective_at, touched)


_SHARED_BALANCES = sa.text(
    "SELECT ledger_account, unit, balance FROM account_balances "
    "WHERE (ledger_account, unit) IN "
    "(SELECT * FROM unnest(CAST(:accounts AS text[]), CAST(:units AS text[])))"
)


async def _announce(uow: UnitOfWork, writes: _Writes, *, now: datetime) -> None:
    """Put the batch's events in the outbox in the order of its changes. Each
    ledger.posted carries the balance after its entry of every account it changed: the
    client's from the balances read under the account's lock, the shared (street) ones
    from one read after the write (their rows stay locked by this transaction, so the
    balance read is the one right after the batch), less what later entries of the
    batch moved."""
    posted = [a for a in writes.announcements if isinstance(a, _Posted)]
    shared = sorted(
        {
            (line.ledger_account, line.unit)
            for p in posted
            for line in p.entry.lines
            if (line.ledger_account, line.unit) not in p.client_balances
        }
    )
    balances: dict[tuple[str, str], Decimal] = {}
    if shared:
        rows = await uow.session.execute(
            _SHARED_BALANCES,
            {"accounts": [a for a, _ in shared], "units": [u for _, u in shared]},
        )
        balances = {(a, u): b for a, u, b in rows}
    after: dict[int, dict[tuple[str, str], Decimal]] = {}
    for index in range(len(writes.announcements) - 1, -1, -1):
        item = writes.announcements[index]
        if not isinstance(item, _Posted):
            continue
        mine: dict[tuple[str, str], Decimal] = dict(item.client_balances)
        for line in item.entry.lines:
            key = (line.ledger_account, line.unit)
            if key in balances and key not in item.client_balances:
                mine[key] = balances[key]
        for line in item.entry.lines:
            key = (line.ledger_account, line.unit)
            if key in balances and key not in item.client_balances:
                balances[key] -= line.debit - line.credit
        after[index] = mine
    for index, item in enumerate(writes.announcements):
        if isinstance(item, Envelope):
            uow.outbox.put(item, topic=LEDGER_EVENTS, key=str(item.data["account"]))
            continue
        entry, cause = item.entry, item.cause
        uow.outbox.put(
            new_event(
                type=contract.POSTED,
                source="ledger",
                subject=entry.trade_id,
                cause=cause,
                actor="service:ledger",
                time=now,
                data=contract.LedgerPosted(
                    entry_id=entry.entry_id,
                    trade_id=entry.trade_id,
                    account=entry.account,
                    kind=entry.kind,
                    lines=_posted_lines(entry.lines),
                    reverses=entry.reverses,
                    version=entry.version,
                    effective_at=item.effective_at,
                    cause_event_id=str(cause.id),
                    cause_event_type=cause.type,
                    balances=[
                        contract.PostedBalance(ledger_account=a, unit=u, balance=b)
                        for (a, u), b in sorted(after[index].items())
                    ],
                ).model_dump(mode="json"),
            ),
            topic=LEDGER_EVENTS,
            key=entry.account,
        )


_POST = sa.text(
    """
    WITH entries AS (
      INSERT INTO journal_entries (entry_id, trade_id, account, kind, event_id, event_type,
                                   posted_at, effective_at, version, reverses)
      SELECT * FROM unnest(CAST(:entry_ids AS text[]), CAST(:trade_ids AS text[]),
                           CAST(:accounts AS text[]), CAST(:kinds AS text[]),
                           CAST(:event_ids AS text[]), CAST(:event_types AS text[]),
                           CAST(:posted_ats AS timestamptz[]),
                           CAST(:effective_ats AS timestamptz[]),
                           CAST(:versions AS int[]), CAST(:reverses AS text[]))
      RETURNING entry_id
    ), lines AS (
      INSERT INTO journal_lines (entry_id, line_no, ledger_account, unit, debit, credit,
                                 effective_at)
      SELECT x.* FROM unnest(CAST(:line_entry_ids AS text[]), CAST(:line_nos AS int[]),
                             CAST(:line_accounts AS text[]), CAST(:line_units AS text[]),
                             CAST(:debits AS numeric[]), CAST(:credits AS numeric[]),
                             CAST(:line_effective_ats AS timestamptz[]))
             AS x(entry_id, line_no, ledger_account, unit, debit, credit, effective_at)
      RETURNING 1
    ), chart AS (
      INSERT INTO ledger_accounts (ledger_account, unit, account_type, normal_side, owner,
                                   asset_class, phase, created_at)
      SELECT *, CAST(:posted_at AS timestamptz)
      FROM unnest(CAST(:chart_accounts AS text[]), CAST(:chart_units AS text[]),
                  CAST(:chart_types AS text[]), CAST(:chart_sides AS text[]),
                  CAST(:chart_owners AS text[]), CAST(:chart_classes AS text[]),
                  CAST(:chart_phases AS text[]))
      ON CONFLICT DO NOTHING
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM lines)
    """
)


async def _write(uow: UnitOfWork, writes: _Writes, *, now: datetime) -> None:
    """Every entry, line and new chart account of the batch in one statement; the
    cancellations and exceptions in one more each, if any."""
    session = uow.session
    if writes.entries:
        entries = [entry for entry, _, _ in writes.entries]
        lines = [
            (entry.entry_id, number, line, effective_at)
            for entry, _, effective_at in writes.entries
            for number, line in enumerate(entry.lines, start=1)
        ]
        pairs = sorted({(line.ledger_account, line.unit) for _, _, line, _ in lines})
        chart = [chart_account(account, unit) for account, unit in pairs]
        await session.execute(
            _POST,
            {
                "entry_ids": [e.entry_id for e in entries],
                "trade_ids": [e.trade_id for e in entries],
                "accounts": [e.account for e in entries],
                "kinds": [e.kind for e in entries],
                "event_ids": [str(cause.id) for _, cause, _ in writes.entries],
                "event_types": [cause.type for _, cause, _ in writes.entries],
                "posted_ats": [now] * len(entries),
                "effective_ats": [at for _, _, at in writes.entries],
                "versions": [e.version for e in entries],
                "reverses": [e.reverses for e in entries],
                "line_entry_ids": [entry_id for entry_id, _, _, _ in lines],
                "line_nos": [number for _, number, _, _ in lines],
                "line_accounts": [line.ledger_account for _, _, line, _ in lines],
                "line_units": [line.unit for _, _, line, _ in lines],
                "debits": [line.debit for _, _, line, _ in lines],
                "credits": [line.credit for _, _, line, _ in lines],
                "line_effective_ats": [at for _, _, _, at in lines],
                "posted_at": now,
                "chart_accounts": [c.ledger_account for c in chart],
                "chart_units": [c.unit for c in chart],
                "chart_types": [c.account_type for c in chart],
                "chart_sides": [c.normal_side for c in chart],
                "chart_owners": [c.owner for c in chart],
                "chart_classes": [c.asset_class for c in chart],
                "chart_phases": [c.phase for c in chart],
            },
        )
    if writes.cancellations:
        await session.execute(
            insert(CancellationRow).values(writes.cancellations).on_conflict_do_nothing()
        )
    if writes.exceptions:
        await session.execute(
            insert(ExceptionRow).values(writes.exceptions).on_conflict_do_nothing()
        )


def _posted_lines(lines: Sequence[domain.Line]) -> list[contract.PostedLine]:
    return [
        contract.PostedLine(
            ledger_account=line.ledger_account, unit=line.unit, debit=line.debit, credit=line.credit
        )
        for line in lines
    ]


def _refuse(
    uow: UnitOfWork,
    writes: _Writes,
    change: _Change,
    decision: domain.Decision,
    breaches: list[Breach],
    *,
    now: datetime,
) -> None:
    """Not applied: the posting goes to the exception queue and an event says so."""
    event = change.event
    exception_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledger-exception:{event.id}"))
    refused = contract.PostingRefused(
        exception_id=exception_id,
        trade_id=change.trade_id,
        account=change.account,
        version=change.version,
        reason="; ".join(
            f"{b.unit} position would be {b.position_after}, below the limit {b.min_position}"
            for b in breaches
        ),
        breaches=[
            contract.LimitBreach(
                account=b.account,
                unit=b.unit,
                min_position=b.min_position,
                position_before=b.position_before,
                position_after=b.position_after,
            )
            for b in breaches
        ],
        lines=_posted_lines([line for entry in decision.entries for line in entry.lines]),
        cause_event_id=str(event.id),
        cause_event_type=event.type,
    )
    body = refused.model_dump(mode="json")
    writes.exceptions.append(
        {
            "exception_id": exception_id,
            "trade_id": change.trade_id,
            "account": change.account,
            "version": change.version,
            "event_id": str(event.id),
            "event_type": event.type,
            "reason": refused.reason,
            "breaches": body["breaches"],
            "lines": body["lines"],
            "raised_at": now,
        }
    )
    log.warning(
        "ledger_posting_refused",
        trade_id=change.trade_id,
        version=change.version,
        reason=refused.reason,
    )
    writes.announcements.append(
        new_event(
            type=contract.POSTING_REFUSED,
            source="ledger",
            subject=change.trade_id,
            cause=event,
            actor="service:ledger",
            time=now,
            data=body,
        )
    )
