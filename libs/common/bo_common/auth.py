"""API keys: generation, hashing, roles, the FastAPI dependency, and key replication.

Keys are created in the gateway (the `bo keys` command) and published on `access.events`;
every service keeps its own copy of the hashes, so each authenticates against its own
database. A key is 32 random bytes, so one SHA-256 is enough to store it safely (a slow
password hash protects low-entropy secrets, which these are not) and keeps auth off the
hot path's critical time.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bo_common.db import ApiKeyRow
from bo_common.envelope import Envelope
from bo_common.unit_of_work import UnitOfWork


class Role(enum.StrEnum):
    TRADER = "trader"
    COMPLIANCE = "compliance"
    OPS = "ops"
    ADMIN = "admin"


KEY_PREFIX = "bo_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    key_id: uuid.UUID
    name: str
    role: Role
    desk: str | None
    # (requests per second, burst) of this client where it has its own; else the default.
    rate_limit: tuple[float, int] | None = None

    @property
    def actor(self) -> str:
        return f"key:{self.name}"


# Looks up a client's own rate limit (the gateway keeps them); None: the service default.
ClientLimits = Callable[[AsyncSession, str], Awaitable[tuple[float, int] | None]]


class NotAuthenticated(Exception):
    """No key, or a key this service does not know (or one that was revoked)."""


class NotAuthorised(Exception):
    """A valid key whose role may not do this."""


class KeyStore:
    """Looks keys up in the service's own table, with a short cache to spare the database.

    A revoked key may keep working for up to `cache_ttl_s` seconds on a replica that
    cached it; that bound is documented in docs/architecture.md ("Keys").
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        cache_ttl_s: float = 5.0,
        limits: ClientLimits | None = None,
    ) -> None:
        self._sessions = sessions
        self._limits = limits
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal_for(self, authorization: str | None) -> Principal:
        if not authorization:
            raise NotAuthenticated("missing Authorization header (expected 'Bearer <api key>')")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("Authorization must be 'Bearer <api key>'")
        key_hash = hash_key(token.strip())
        now = time.monotonic()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            principal = await self._load(key_hash)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_hash] = (now + self._ttl, principal)
        if principal is None:
            raise NotAuthenticated("unknown or revoked API key")
        return principal

    async def _load(self, key_hash: str) -> Principal | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    sa.select(ApiKeyRow).where(
                        ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None)
                    )
                )
            ).scalar_one_or_none()
            if row is None:
                return None
            limit = await self._limits(session, row.name) if self._limits else None
        return Principal(
            key_id=row.key_id, name=row.name, role=Role(row.role), desk=row.desk, rate_limit=limit
        )


def require_role(principal: Principal, *roles: Role) -> Principal:
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise NotAuthorised(f"role '{principal.role.value}' may not do this (needs: {allowed})")
    return principal


def key_created_data(
    *,
    key_id: uuid.UUID,
    key_hash: str,
    name: str,
    role: Role,
    desk: str | None,
    created_at: datetime,
) -> dict[str, Any]:
    return {
        "key_id": str(key_id),
        "key_hash": key_hash,
        "name": name,
        "role": role.value,
        "desk": desk,
        "created_at": created_at.isoformat(),
    }


async def apply_key_created(event: Envelope, uow: UnitOfWork) -> None:
    data = event.data
    await uow.session.execute(
        insert(ApiKeyRow)
        .values(
            key_hash=data["key_hash"],
            key_id=uuid.UUID(data["key_id"]),
            name=data["name"],
            role=Role(data["role"]).value,
            desk=data.get("desk"),
            created_at=datetime.fromisoformat(data["created_at"]),
        )
        .on_conflict_do_nothing(index_elements=["key_hash"])
    )


async def apply_key_revoked(event: Envelope, uow: UnitOfWork) -> None:
    # A revocation may arrive before the creation it revokes (no order across partitions
    # is needed here, but redelivery may reorder): store a revoked placeholder then.
    key_id = uuid.UUID(event.data["key_id"])
    revoked_at = datetime.fromisoformat(event.data["revoked_at"])
    result = await uow.session.execute(
        sa.update(ApiKeyRow)
        .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
        .values(revoked_at=revoked_at)
    )
    if result.rowcount == 0 and "key_hash" in event.data:  # type: ignore[attr-defined]
        await uow.session.execute(
            insert(ApiKeyRow)
            .values(
                key_hash=event.data["key_hash"],
                key_id=key_id,
                name=event.data.get("name", ""),
                role=event.data.get("role", Role.TRADER.value),
                desk=None,
                created_at=revoked_at,
                revoked_at=revoked_at,
            )
            .on_conflict_do_nothing(index_elements=["key_hash"])
        )


ACCESS_HANDLERS: dict[str, Callable[[Envelope, UnitOfWork], Awaitable[None]]] = {
    "access.key_created": apply_key_created,
    "access.key_revoked": apply_key_revoked,
}
