"""Gateway use cases: capture trades (one or a batch), amend and cancel them, and follow a
trade's progress from every service's events."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bo_common.auth import Principal, Role
from bo_common.contracts import gateway as contract
from bo_common.envelope import Envelope, new_event
from bo_common.topics import TRADE_EVENTS
from bo_common.unit_of_work import UnitOfWork
from gateway import domain, repository
from gateway.tables import TradeRow, TradeVersionRow

TERM_FIELDS = (
    "side",
    "isin",
    "cusip",
    "quantity",
    "price",
    "currency",
    "trade_date",
    "trade_time",
    "venue",
    "counterparty_lei",
    "settlement_type",
)


@dataclass(frozen=True)
class Outcome:
    """What became of one trade of a request: captured now, captured before, or refused
    (with the HTTP status a single request would get, and each field's reason)."""

    index: int
    client_trade_id: str | None
    trade: TradeRow | None = None
    created: bool = False
    status: int = 201
    errors: list[tuple[str, str]] = field(default_factory=list)
    detail: str = ""

    @property
    def rejected(self) -> bool:
        return self.trade is None


class NotFound(domain.DomainError):
    pass


def client_of(principal: Principal) -> str:
    """Idempotency keys are unique per submitting client: the key's name, which survives
    key rotation when the new key is given the same name."""
    return principal.name


def _as_request(body: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, str) or v is None else str(v)) for k, v in body.items()}


def _event_terms(row: TradeRow | dict[str, Any]) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    data = {
        name: get(name)
        for name in (
            "trade_id",
            "client_trade_id",
            "account",
            "desk",
            *TERM_FIELDS,
            "version",
        )
    }
    data["gross_amount"] = data["quantity"] * data["price"]
    return data


async def capture_trades(
    bodies: list[tuple[int, dict[str, Any]]],
    *,
    principal: Principal,
    uow: UnitOfWork,
    now: datetime | None = None,
) -> list[Outcome]:
    """Capture valid trades (each body already passed the field rules) in one transaction.

    Idempotent on (client, client_trade_id): a body sent again is answered with the trade it
    created; another body under a used client_trade_id is refused (409) naming the first
    field that differs. Bodies refused by a rule are reported and the others still captured.
    """
    now = now or datetime.now(UTC)
    client = client_of(principal)
    outcomes: dict[int, Outcome] = {}
    async with uow:
        # Autocommit: the capture is one statement, atomic on its own (repository.capture).
        await uow.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        desks = await repository.desks_of_accounts(
            uow.session, sorted({body["account"] for _, body in bodies})
        )
        rows: list[dict[str, Any]] = []
        first_of_key: dict[str, tuple[int, dict[str, Any]]] = {}
        repeats: list[tuple[int, dict[str, Any]]] = []
        for index, body in bodies:
            ctid = body["client_trade_id"]
            desk = desks.get(body["account"])
            # A trader learns only that the account is not its desk's, not whether it exists.
            if principal.role is Role.TRADER and (desk is None or desk != principal.desk):
                error = domain.AccountNotAllowed(body["account"], principal.desk)
                outcomes[index] = Outcome(
                    index, ctid, status=403, errors=[("account", str(error))], detail=str(error)
                )
                continue
            if desk is None:
                outcomes[index] = Outcome(
                    index,
                    ctid,
                    status=422,
                    errors=[("account", str(domain.UnknownAccount(body["account"])))],
                )
                continue
            errors = domain.rule_errors(body, now)
            if errors:
                outcomes[index] = Outcome(index, ctid, status=422, errors=errors)
                continue
            if ctid in first_of_key:
                repeats.append((index, body))
                continue
            first_of_key[ctid] = (index, body)
            rows.append(
                {
                    **body,
                    "trade_id": str(uuid.uuid4()),
                    "client": client,
                    "desk": desk,
                    "request": _as_request(body),
                    "request_hash": domain.request_hash(body),
                    "received_at": now,
                    "state": "captured",
                    "state_rank": domain.STATE_OF_EVENT[contract.TRADE_CAPTURED][1],
                    "state_changed_at": now,
                    "version": 1,
                }
            )
        for row in rows:  # each trade's event, written only if the trade is new
            uow.outbox.put(
                _captured_event(row, principal, now), topic=TRADE_EVENTS, key=row["account"]
            )
        events = [
            {"trade_id": row["trade_id"], **event}
            for row, event in zip(rows, uow.outbox.take(new_correlations=True), strict=True)
        ]
        inserted = await repository.capture(uow.session, rows, events)
        by_key: dict[str, TradeRow] = {
            row["client_trade_id"]: TradeRow(**row) for row in rows if row["trade_id"] in inserted
        }
        earlier = [r["client_trade_id"] for r in rows if r["trade_id"] not in inserted]
        earlier += [body["client_trade_id"] for _, body in repeats]
        if earlier:
            by_key.update(
                {
                    k: v
                    for k, v in (
                        await repository.trades_by_client_ids(uow.session, client, earlier)
                    ).items()
                    if k not in by_key
                }
            )
        created_keys = {row["client_trade_id"] for row in rows if row["trade_id"] in inserted}
        for index, body in [*first_of_key.values(), *repeats]:
            ctid = body["client_trade_id"]
            existing = by_key.get(ctid)
            if existing is None:  # the key's row vanished: cannot happen (no deletes)
                raise RuntimeError(f"idempotency conflict without a stored trade for {ctid}")
            is_new = ctid in created_keys and first_of_key[ctid][0] == index
            outcomes[index] = _answer(index, existing, body, created=is_new)
        await uow.commit()
    return [outcomes[index] for index, _ in bodies]


def _answer(index: int, existing: TradeRow, body: dict[str, Any], *, created: bool) -> Outcome:
    ctid = existing.client_trade_id
    if created or existing.request_hash == domain.request_hash(body):
        return Outcome(index, ctid, trade=existing, created=created, status=201 if created else 200)
    difference = domain.first_difference(dict(existing.request), _as_request(body)) or "body"
    detail = (
        f"client_trade_id '{ctid}' was already used for trade {existing.trade_id} "
        f"with a different '{difference}'"
    )
    return Outcome(
        index,
        ctid,
        status=409,
        errors=[(difference, detail)],
        detail=detail,
        trade=None,
    )


def _captured_event(row: dict[str, Any], principal: Principal, now: datetime) -> Envelope:
    data = contract.TradeCaptured(**_event_terms(row)).model_dump(mode="json")
    return _trade_event(
        contract.TRADE_CAPTURED,
        contract.TRADE_CAPTURED_VERSION,
        row["trade_id"],
        data,
        principal,
        now,
    )


def _trade_event(
    type_: str,
    version: int,
    trade_id: str,
    data: dict[str, Any],
    principal: Principal,
    now: datetime,
) -> Envelope:
    """An event of the trade's life on trade.events: correlated by the trade id."""
    return new_event(
        type=type_,
        version=version,
        source="gateway",
        subject=trade_id,
        correlation_id=trade_id,
        actor=principal.actor,
        data=data,
        time=now,
    )


async def _changeable_row(uow: UnitOfWork, trade_id: str, visible: list[str] | None) -> TradeRow:
    """The trade, locked for the change; 404 for one the key may not see."""
    row = await repository.lock_trade(uow.session, trade_id)
    if row is None or (visible is not None and row.account not in visible):
        raise NotFound(f"no trade '{trade_id}'")
    return row


def _record_change(
    uow: UnitOfWork,
    row: TradeRow,
    *,
    change: str,
    changed: list[str],
    reason: str,
    principal: Principal,
    now: datetime,
    event: Envelope,
) -> None:
    """The version history row and the event, in the change's transaction."""
    uow.session.add(
        TradeVersionRow(
            trade_id=row.trade_id,
            version=row.version,
            change=change,
            terms=_as_request(terms_of(row)),
            changed_fields=changed,
            reason=reason,
            actor=principal.actor,
            at=now,
        )
    )
    uow.outbox.put(event, topic=TRADE_EVENTS, key=row.account)


def terms_of(row: TradeRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in TERM_FIELDS}


async def amend_trade(
    trade_id: str,
    *,
    validate: Callable[[dict[str, Any]], dict[str, Any]],
    changes: dict[str, Any],
    reason: str,
    principal: Principal,
    visible: list[str] | None,
    uow: UnitOfWork,
    now: datetime | None = None,
) -> tuple[TradeRow, bool]:
    """Apply `changes` to the trade's terms as a new version; the trade and whether it
    changed. `validate(terms)` checks the whole amended trade and returns its typed terms
    or raises the caller's validation error."""
    now = now or datetime.now(UTC)
    async with uow:
        row = await _changeable_row(uow, trade_id, visible)
        domain.check_changeable(row.state, "amend")
        merged, changed = domain.amended_terms(terms_of(row), changes)
        if not changed:
            return row, False
        terms = validate({**merged, "client_trade_id": row.client_trade_id, "account": row.account})
        errors = domain.rule_errors(terms, now)
        if errors:
            raise domain.InvalidTerms(errors)
        for name in TERM_FIELDS:
            setattr(row, name, terms[name])
        row.version += 1
        rank = domain.STATE_OF_EVENT[contract.TRADE_CAPTURED][1]
        row.state, row.state_rank, row.state_changed_at = "captured", rank, now
        data = contract.TradeAmended(
            **_event_terms(row), reason=reason, changed_fields=changed
        ).model_dump(mode="json")
        event = _trade_event(
            contract.TRADE_AMENDED,
            contract.TRADE_AMENDED_VERSION,
            row.trade_id,
            data,
            principal,
            now,
        )
        _record_change(
            uow,
            row,
            change="amend",
            changed=changed,
            reason=reason,
            principal=principal,
            now=now,
            event=event,
        )
        await uow.commit()
        return row, True


async def cancel_trade(
    trade_id: str,
    *,
    reason: str,
    principal: Principal,
    visible: list[str] | None,
    uow: UnitOfWork,
    now: datetime | None = None,
) -> tuple[TradeRow, bool]:
    """Cancel the trade; a second cancellation is answered with the cancelled trade."""
    now = now or datetime.now(UTC)
    async with uow:
        row = await _changeable_row(uow, trade_id, visible)
        if row.state == "cancelled":
            return row, False
        domain.check_changeable(row.state, "cancel")
        rank = domain.STATE_OF_EVENT[contract.TRADE_CANCELLED][1]
        row.state, row.state_rank, row.state_changed_at = "cancelled", rank, now
        row.cancel_reason = reason
        data = contract.TradeCancelled(
            trade_id=row.trade_id,
            client_trade_id=row.client_trade_id,
            account=row.account,
            desk=row.desk,
            version=row.version,
            reason=reason,
        ).model_dump(mode="json")
        event = _trade_event(
            contract.TRADE_CANCELLED,
            contract.TRADE_CANCELLED_VERSION,
            row.trade_id,
            data,
            principal,
            now,
        )
        _record_change(
            uow,
            row,
            change="cancel",
            changed=[],
            reason=reason,
            principal=principal,
            now=now,
            event=event,
        )
        await uow.commit()
        return row, True


async def record_progress(event: Envelope, uow: UnitOfWork) -> None:
    """Any event of a trade's chain: add it to the timeline and move the state forward."""
    await record_progress_of([event], uow)


async def record_progress_of(events: list[Envelope], uow: UnitOfWork) -> None:
    """A run of events (the consume loop's batch handler): each added to its trade's
    timeline, and the trades' states moved forward in one statement."""
    changes = []
    for event in events:
        trade_id = domain.trade_of_event(event.data, event.correlation_id)
        if trade_id is None:
            continue
        repository.record_timeline(
            uow.outbox,
            event_id=event.id,
            trade_id=trade_id,
            event_type=event.type,
            source=event.source,
            occurred_at=event.time,
            data=event.data,
        )
        state = domain.STATE_OF_EVENT.get(event.type)
        if state is not None:
            version = event.data.get("version")
            changes.append(
                repository.StateChange(
                    trade_id=trade_id,
                    state=state[0],
                    rank=state[1],
                    at=event.time,
                    version=version if isinstance(version, int) else None,
                )
            )
    await repository.raise_states(uow.session, changes)
