"""Keys and desks, administered from the `bo` command line against the gateway database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from bo_common.auth import Role, generate_key, hash_key, key_created_data
from bo_common.db import ApiKeyRow
from bo_common.envelope import new_event
from bo_common.topics import ACCESS_EVENTS
from bo_common.unit_of_work import UnitOfWork
from gateway.tables import ClientLimitRow, DeskAccountRow, DeskRow


class AdminError(Exception):
    pass


async def create_key(uow: UnitOfWork, *, role: Role, name: str, desk: str | None) -> str:
    """Store the key's hash and publish it to every service; returns the key (shown once)."""
    if role is Role.TRADER and not desk:
        raise AdminError("a trader key needs --desk")
    key = generate_key()
    key_id = uuid.uuid4()
    now = datetime.now(UTC)
    async with uow:
        if desk is not None and await uow.session.get(DeskRow, desk) is None:
            raise AdminError(f"no desk '{desk}'")
        await uow.session.execute(
            insert(ApiKeyRow).values(
                key_hash=hash_key(key),
                key_id=key_id,
                name=name,
                role=role.value,
                desk=desk,
                created_at=now,
            )
        )
        uow.outbox.put(
            new_event(
                type="access.key_created",
                source="gateway",
                subject=str(key_id),
                actor="cli",
                time=now,
                data=key_created_data(
                    key_id=key_id,
                    key_hash=hash_key(key),
                    name=name,
                    role=role,
                    desk=desk,
                    created_at=now,
                ),
            ),
            topic=ACCESS_EVENTS,
            key=str(key_id),
        )
        await uow.commit()
    return key


async def revoke_key(uow: UnitOfWork, *, name: str) -> int:
    now = datetime.now(UTC)
    async with uow:
        rows = (
            await uow.session.execute(
                sa.update(ApiKeyRow)
                .where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(ApiKeyRow.key_id, ApiKeyRow.key_hash, ApiKeyRow.role)
            )
        ).all()
        for row in rows:
            uow.outbox.put(
                new_event(
                    type="access.key_revoked",
                    source="gateway",
                    subject=str(row.key_id),
                    actor="cli",
                    time=now,
                    data={
                        "key_id": str(row.key_id),
                        "key_hash": row.key_hash,
                        "name": name,
                        "role": row.role,
                        "revoked_at": now.isoformat(),
                    },
                ),
                topic=ACCESS_EVENTS,
                key=str(row.key_id),
            )
        await uow.commit()
    return len(rows)


async def create_desk(uow: UnitOfWork, *, name: str, accounts: list[str]) -> None:
    """Create a desk (or add accounts to it); an account belongs to one desk only."""
    async with uow:
        await uow.session.execute(
            insert(DeskRow).values(name=name).on_conflict_do_nothing(index_elements=["name"])
        )
        for account in accounts:
            owner = await uow.session.scalar(
                sa.select(DeskAccountRow.desk).where(DeskAccountRow.account == account)
            )
            if owner is not None and owner != name:
                raise AdminError(f"account '{account}' already belongs to desk '{owner}'")
            if owner is None:
                await uow.session.execute(insert(DeskAccountRow).values(desk=name, account=account))
        await uow.commit()


async def set_client_limit(
    uow: UnitOfWork, *, client: str, per_second: float | None, burst: int | None = None
) -> None:
    """Give a client (every key of that name) its own rate limit, or the default again
    (per_second None). Replicas pick it up within their key cache time (5 s)."""
    async with uow:
        if per_second is None:
            await uow.session.execute(
                sa.delete(ClientLimitRow).where(ClientLimitRow.client == client)
            )
        else:
            if per_second <= 0 or (burst is not None and burst < 1):
                raise AdminError("the rate must be positive and the burst at least 1")
            values = {
                "client": client,
                "requests_per_second": per_second,
                "burst": burst or max(1, int(per_second * 2)),
            }
            await uow.session.execute(
                insert(ClientLimitRow)
                .values(values)
                .on_conflict_do_update(index_elements=["client"], set_=values)
            )
        await uow.commit()
