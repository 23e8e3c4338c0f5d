"""Gateway use cases: capture a trade; follow a trade's progress from every service's events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bo_common.auth import Principal, Role
from bo_common.contracts import gateway as contract
from bo_common.envelope import Envelope, new_event
from bo_common.topics import TRADE_EVENTS
from bo_common.unit_of_work import UnitOfWork
from gateway import domain, repository
from gateway.tables import TradeRow


class DuplicateWithDifferentBody(domain.DomainError):
    def __init__(self, existing: TradeRow, field: str) -> None:
        super().__init__(
            f"client_trade_id '{existing.client_trade_id}' was already used for trade "
            f"{existing.trade_id} with a different '{field}'"
        )
        self.existing = existing
        self.field = field


@dataclass(frozen=True)
class CaptureResult:
    trade: TradeRow
    created: bool


def client_of(principal: Principal) -> str:
    """Idempotency keys are unique per submitting client: the key's name, which survives
    key rotation when the new key is given the same name."""
    return principal.name


async def capture_trade(
    body: dict[str, Any], *, principal: Principal, uow: UnitOfWork, today: datetime | None = None
) -> CaptureResult:
    now = today or datetime.now(UTC)
    client = client_of(principal)
    request_hash = domain.request_hash(body)
    async with uow:
        desk = await repository.desk_of_account(uow.session, body["account"])
        if principal.role is Role.TRADER and (desk is None or desk != principal.desk):
            raise domain.AccountNotAllowed(body["account"], principal.desk)
        domain.check_trade_date(body["trade_date"], body["trade_time"], now.date())
        trade = domain.Trade(
            trade_id=str(uuid.uuid4()),
            client=client,
            received_at=now,
            request_hash=request_hash,
            desk=desk,
            **body,
        )
        request = {k: (str(v) if not isinstance(v, str) else v) for k, v in body.items()}
        # Insert first: a retry (even a concurrent one) meets the unique constraint on
        # (client, client_trade_id) and is answered from the stored trade.
        row = await repository.insert_trade(uow.session, trade, request)
        if row is None:
            await uow.session.rollback()
            existing = await repository.trade_by_client_id(
                uow.session, client, body["client_trade_id"]
            )
            if existing is None:
                raise RuntimeError("idempotency conflict without a stored trade")
            return _replay(existing, body, request_hash)
        event = new_event(
            type=contract.TRADE_CAPTURED,
            version=contract.TRADE_CAPTURED_VERSION,
            source="gateway",
            subject=trade.trade_id,
            correlation_id=trade.trade_id,
            actor=principal.actor,
            data=contract.TradeCaptured(
                trade_id=trade.trade_id,
                client_trade_id=trade.client_trade_id,
                account=trade.account,
                desk=trade.desk,
                side=trade.side,  # type: ignore[arg-type]
                isin=trade.isin,
                quantity=trade.quantity,
                price=trade.price,
                currency=trade.currency,
                gross_amount=trade.gross_amount,
                trade_date=trade.trade_date,
                trade_time=trade.trade_time,
                venue=trade.venue,
                counterparty_lei=trade.counterparty_lei,
                settlement_type=trade.settlement_type,  # type: ignore[arg-type]
            ).model_dump(mode="json"),
            time=now,
        )
        uow.outbox.put(event, topic=TRADE_EVENTS, key=trade.account)
        await uow.commit()
        return CaptureResult(trade=row, created=True)


def _replay(existing: TradeRow, body: dict[str, Any], request_hash: str) -> CaptureResult:
    if existing.request_hash == request_hash:
        return CaptureResult(trade=existing, created=False)
    request = {k: (str(v) if not isinstance(v, str) else v) for k, v in body.items()}
    field = domain.first_difference(dict(existing.request), request) or "body"
    raise DuplicateWithDifferentBody(existing, field)


async def record_progress(event: Envelope, uow: UnitOfWork) -> None:
    """Any event of a trade's chain: add it to the timeline and move the state forward."""
    trade_id = str(event.data.get("trade_id") or event.correlation_id)
    await repository.record_timeline(
        uow.session,
        event_id=event.id,
        trade_id=trade_id,
        event_type=event.type,
        source=event.source,
        occurred_at=event.time,
        data=event.data,
    )
    state = domain.STATE_OF_EVENT.get(event.type)
    if state is not None:
        await repository.raise_state(
            uow.session, trade_id=trade_id, state=state[0], rank=state[1], at=event.time
        )
