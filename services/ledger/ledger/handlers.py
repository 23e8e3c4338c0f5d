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

Each event costs two statements, three for the first event of an account in a consumed
batch (the lock): one read of the trade's book with the account's limits and balances (one
JSON row), and one write of its entries, lines and chart accounts (the database's trigger
checks the balance and keeps the balance projections). The account's balances after each
entry, which ledger.posted carries, are the balances read plus the entry's lines: exact,
because every posting to a client's accounts holds that account's lock.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from bo_common.contracts import gateway as gateway_contract
from bo_common.contracts import ledger as contract
from bo_common.contracts import settlement as settlement_contract
from bo_common.contracts._base import EventData
from bo_common.envelope import Envelope, new_event
from bo_common.logs import get_logger
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
# trade, and by settlement for each part a depository settles. Named here until their
# contract modules name them.
TRADE_REJECTED = "compliance.trade_rejected"
PARTIALLY_SETTLED = "settlement.partially_settled"


class TradeRejected(EventData):
    """What the ledger reads of compliance.trade_rejected: a rejection cancels the trade
    downstream, so the ledger voids its pending entries as for a cancellation."""

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
    )


async def post_trade_capture(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeCaptured.model_validate(event.data)
    state = await _load(uow, trade.account, trade.trade_id)
    decision = domain.book_capture(state.book, _terms(trade), version=trade.version)
    await _apply(
        uow, state, decision, event, change="capture", version=trade.version,
        trade_time=trade.trade_time,
    )  # fmt: skip


async def post_trade_amendment(event: Envelope, uow: UnitOfWork) -> None:
    trade = gateway_contract.TradeAmended.model_validate(event.data)
    state = await _load(uow, trade.account, trade.trade_id)
    decision = domain.book_amendment(state.book, _terms(trade), version=trade.version)
    await _apply(uow, state, decision, event, change="amend", version=trade.version)


async def post_trade_cancellation(event: Envelope, uow: UnitOfWork) -> None:
    cancelled = gateway_contract.TradeCancelled.model_validate(event.data)
    await _void(
        uow, event, cancelled.trade_id, cancelled.account, cancelled.version, cancelled.reason
    )


async def post_trade_rejection(event: Envelope, uow: UnitOfWork) -> None:
    rejected = TradeRejected.model_validate(event.data)
    await _void(
        uow,
        event,
        rejected.trade_id,
        rejected.account,
        rejected.version,
        f"rejected by compliance: {rejected.reason}",
    )


async def _void(
    uow: UnitOfWork, event: Envelope, trade_id: str, account: str, version: int, reason: str
) -> None:
    """Void the trade's pending entry and remember that it will never settle (a capture or
    amendment arriving later books nothing)."""
    state = await _load(uow, account, trade_id)
    decision = domain.book_cancellation(state.book)
    await _apply(uow, state, decision, event, change="cancel", version=version)
    if decision.record_cancellation:
        await uow.session.execute(
            insert(CancellationRow)
            .values(
                trade_id=trade_id,
                account=account,
                version=version,
                reason=reason,
                event_id=str(event.id),
                recorded_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )


async def post_settlement(event: Envelope, uow: UnitOfWork) -> None:
    settled = settlement_contract.SettlementSettled.model_validate(event.data)
    state = await _load(uow, settled.account, settled.trade_id)
    book = state.book
    decision = domain.book_settlement(
        book, _settled_terms(settled), settled_entry_id=domain.settled_entry_id(settled.trade_id)
    )
    if len(decision.entries) > 1:
        # A change the ledger booked that settlement refused (it reached settlement after
        # the instruction), or a posting a limit refused: the books follow what the
        # depository settled.
        log.warning(
            "ledger_rebooked_as_settled",
            trade_id=settled.trade_id,
            booked_version=book.booked_version,
            cancelled=book.cancelled,
            refused_version=book.refused_version,
        )
    await _apply(uow, state, decision, event, change="settle", version=book.booked_version or 1)


async def post_partial_settlement(event: Envelope, uow: UnitOfWork) -> None:
    part = settlement_contract.SettlementSettled.model_validate(event.data)
    state = await _load(uow, part.account, part.trade_id)
    decision = domain.book_partial_settlement(
        state.book,
        _settled_terms(part),
        entry_id=domain.partial_entry_id(part.trade_id, str(event.id)),
    )
    await _apply(
        uow, state, decision, event, change="settle", version=state.book.booked_version or 1
    )


# --- reading --------------------------------------------------------------------------


@dataclass
class _State:
    account: str
    trade_id: str
    book: domain.Book
    limits: dict[str, Limit] = field(default_factory=dict)
    # The client account's balances (debit - credit) per (ledger account, unit), now.
    balances: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def positions(self) -> dict[str, Decimal]:
        """Trade-date position (settled + pending) per unit."""
        totals: dict[str, Decimal] = {}
        for (_, unit), balance in self.balances.items():
            totals[unit] = totals.get(unit, Decimal(0)) + balance
        return totals


_LOAD = sa.text(
    """
    SELECT
      EXISTS (SELECT 1 FROM trade_cancellations WHERE trade_id = :trade_id) AS cancelled,
      (SELECT max(version) FROM ledger_exceptions WHERE trade_id = :trade_id) AS refused,
      (SELECT json_agg(json_build_array(
                e.entry_id, e.kind, e.version, e.reverses, e.account,
                (SELECT json_agg(json_build_array(l.ledger_account, l.unit, l.debit::text,
                                                  l.credit::text) ORDER BY l.line_no)
                 FROM journal_lines l WHERE l.entry_id = e.entry_id)) ORDER BY e.seq)
       FROM journal_entries e WHERE e.trade_id = :trade_id) AS entries,
      (SELECT json_agg(json_build_array(unit, min_position::text))
       FROM account_limits WHERE account = :account) AS limits,
      (SELECT json_agg(json_build_array(ledger_account, unit, balance::text))
       FROM account_balances WHERE ledger_account = ANY(:names)) AS balances
    """
)


async def _load(uow: UnitOfWork, account: str, trade_id: str) -> _State:
    """What the journal holds for the trade, and the account's limits, read under the
    account's lock."""
    session = uow.session
    await _lock_account(uow, account)
    row = (
        await session.execute(
            _LOAD,
            {
                "trade_id": trade_id,
                "account": account,
                "names": list(client_account_names(account)),
            },
        )
    ).one()
    entries = [
        domain.Entry(
            entry_id=entry_id,
            trade_id=trade_id,
            account=entry_account,
            kind=kind,
            lines=tuple(
                domain.Line(a, u, debit=Decimal(d), credit=Decimal(c)) for a, u, d, c in lines
            ),
            version=version,
            reverses=reverses,
        )
        for entry_id, kind, version, reverses, entry_account, lines in _json(row.entries)
    ]
    book = domain.Book.of(entries, cancelled=row.cancelled, refused_version=row.refused)
    limits = {unit: Limit(account, unit, Decimal(minimum)) for unit, minimum in _json(row.limits)}
    balances = {(a, u): Decimal(b) for a, u, b in _json(row.balances)}
    return _State(account, trade_id, book, limits, balances)


_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def _lock_account(uow: UnitOfWork, account: str) -> None:
    """The account's transaction-level advisory lock, taken once per (sub)transaction: the
    consume loop applies a batch in one savepoint (or, after a failure, each message in
    its own), and a lock taken in a savepoint that is rolled back is released with it."""
    session = uow.session
    transaction = session.get_nested_transaction() or session.get_transaction()
    held = session.info.get("ledger_locks")
    if held is None or held[0] is not transaction:
        held = (transaction, set())
        session.info["ledger_locks"] = held
    if account in held[1]:
        return
    await session.execute(_LOCK, {"key": f"ledger:{account}"})
    held[1].add(account)


def _json(value: Any) -> list[Any]:
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


# --- writing --------------------------------------------------------------------------


async def _apply(
    uow: UnitOfWork,
    state: _State,
    decision: domain.Decision,
    event: Envelope,
    *,
    change: str,
    version: int,
    trade_time: datetime | None = None,
) -> None:
    trade_id = state.trade_id
    if decision.skipped is not None:
        if decision.refused:
            # Settlement refuses such a change too (settlement.change_refused).
            log.warning(
                "ledger_change_not_booked",
                trade_id=trade_id,
                change=change,
                version=version,
                reason=decision.skipped,
            )
        else:
            log.info(
                "ledger_nothing_to_book",
                trade_id=trade_id,
                change=change,
                version=version,
                reason=decision.skipped,
            )
        return
    if change in ("capture", "amend") and state.limits and not state.book.settled:
        # New contractual terms are what a limit stops; voids and settlements are facts
        # (the trade will not settle, or the depository has settled it) and always post.
        breaches = limit_breaches(
            state.account, decision.entries, positions=state.positions(), limits=state.limits
        )
        if breaches:
            await _refuse(uow, state, decision, event, version=version, breaches=breaches)
            return
    effective_at = domain.effective_time(change, event_time=event.time, trade_time=trade_time)
    await _post(uow, state, decision.entries, event, effective_at=effective_at)


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
      ON CONFLICT DO NOTHING
      RETURNING entry_id
    ), lines AS (
      INSERT INTO journal_lines (entry_id, line_no, ledger_account, unit, debit, credit,
                                 effective_at)
      SELECT x.* FROM unnest(CAST(:line_entry_ids AS text[]), CAST(:line_nos AS int[]),
                             CAST(:line_accounts AS text[]), CAST(:line_units AS text[]),
                             CAST(:debits AS numeric[]), CAST(:credits AS numeric[]),
                             CAST(:line_effective_ats AS timestamptz[]))
             AS x(entry_id, line_no, ledger_account, unit, debit, credit, effective_at)
      WHERE x.entry_id IN (SELECT entry_id FROM entries)
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
    SELECT entry_id FROM entries
    """
)


async def _post(
    uow: UnitOfWork,
    state: _State,
    entries: Sequence[domain.Entry],
    cause: Envelope,
    *,
    effective_at: datetime,
) -> None:
    """Write the entries (all of one decision, in order) in one statement and put a
    ledger.posted for each in the outbox, with the client account balances it changed."""
    now = datetime.now(UTC)
    lines = [
        (entry.entry_id, number, line)
        for entry in entries
        for number, line in enumerate(entry.lines, start=1)
    ]
    pairs = sorted({(line.ledger_account, line.unit) for _, _, line in lines})
    chart = [chart_account(account, unit) for account, unit in pairs]
    inserted = set(
        (
            await uow.session.execute(
                _POST,
                {
                    "entry_ids": [e.entry_id for e in entries],
                    "trade_ids": [e.trade_id for e in entries],
                    "accounts": [e.account for e in entries],
                    "kinds": [e.kind for e in entries],
                    "event_ids": [str(cause.id)] * len(entries),
                    "event_types": [cause.type] * len(entries),
                    "posted_ats": [now] * len(entries),
                    "effective_ats": [effective_at] * len(entries),
                    "versions": [e.version for e in entries],
                    "reverses": [e.reverses for e in entries],
                    "line_entry_ids": [entry_id for entry_id, _, _ in lines],
                    "line_nos": [number for _, number, _ in lines],
                    "line_accounts": [line.ledger_account for _, _, line in lines],
                    "line_units": [line.unit for _, _, line in lines],
                    "debits": [line.debit for _, _, line in lines],
                    "credits": [line.credit for _, _, line in lines],
                    "line_effective_ats": [effective_at] * len(lines),
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
        ).scalars()
    )
    posted = [entry for entry in entries if entry.entry_id in inserted]
    if not posted:
        return  # booked already
    client_names = set(client_account_names(state.account))
    balances = state.balances
    after_each: list[dict[tuple[str, str], Decimal]] = []
    for entry in posted:
        touched: dict[tuple[str, str], Decimal] = {}
        for line in entry.lines:
            if line.ledger_account in client_names:
                key = (line.ledger_account, line.unit)
                balances[key] = balances.get(key, Decimal(0)) + line.debit - line.credit
                touched[key] = balances[key]
        after_each.append(dict(sorted(touched.items())))
    for entry, after in zip(posted, after_each, strict=True):
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
                    effective_at=effective_at,
                    cause_event_id=str(cause.id),
                    cause_event_type=cause.type,
                    balances=[
                        contract.PostedBalance(ledger_account=a, unit=u, balance=b)
                        for (a, u), b in after.items()
                    ],
                ).model_dump(mode="json"),
            ),
            topic=LEDGER_EVENTS,
            key=entry.account,
        )


def _posted_lines(lines: Sequence[domain.Line]) -> list[contract.PostedLine]:
    return [
        contract.PostedLine(
            ledger_account=line.ledger_account, unit=line.unit, debit=line.debit, credit=line.credit
        )
        for line in lines
    ]


async def _refuse(
    uow: UnitOfWork,
    state: _State,
    decision: domain.Decision,
    event: Envelope,
    *,
    version: int,
    breaches: list[Breach],
) -> None:
    """Not applied: the posting goes to the exception queue and an event says so."""
    exception_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledger-exception:{event.id}"))
    lines = _posted_lines([line for entry in decision.entries for line in entry.lines])
    refused = contract.PostingRefused(
        exception_id=exception_id,
        trade_id=state.trade_id,
        account=state.account,
        version=version,
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
        lines=lines,
        cause_event_id=str(event.id),
        cause_event_type=event.type,
    )
    body = refused.model_dump(mode="json")
    now = datetime.now(UTC)
    await uow.session.execute(
        insert(ExceptionRow)
        .values(
            exception_id=exception_id,
            trade_id=state.trade_id,
            account=state.account,
            version=version,
            event_id=str(event.id),
            event_type=event.type,
            reason=refused.reason,
            breaches=body["breaches"],
            lines=body["lines"],
            raised_at=now,
        )
        .on_conflict_do_nothing()
    )
    log.warning(
        "ledger_posting_refused", trade_id=state.trade_id, version=version, reason=refused.reason
    )
    uow.outbox.put(
        new_event(
            type=contract.POSTING_REFUSED,
            source="ledger",
            subject=state.trade_id,
            cause=event,
            actor="service:ledger",
            time=now,
            data=body,
        ),
        topic=LEDGER_EVENTS,
        key=state.account,
    )
