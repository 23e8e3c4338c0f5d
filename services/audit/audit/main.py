"""Composition root of audit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import handlers
from audit.api import router
from audit.config import Settings
from audit.consumers import subscription
from audit.signing_key import load_signing_key
from bo_common.logs import get_logger
from bo_common.runtime import ServiceRuntime, build_app

log = get_logger(__name__)

# Any constant: the same for every replica, so that one of them publishes tree heads.
_TREE_HEAD_LOCK_KEY = 0x74726565686561  # "treehea"


class AuditRuntime(ServiceRuntime):
    """The service runtime whose database connections work as the audit role."""

    settings: Settings

    @property  # type: ignore[override]
    def engine(self) -> AsyncEngine:
        return self._engine

    @engine.setter
    def engine(self, engine: AsyncEngine) -> None:
        # Set as the runtime builds the engine, before any connection is made.
        role = self.settings.database_role
        if role:
            event.listen(engine.sync_engine, "connect", _switch_role(role))
        self._engine = engine


def _switch_role(role: str):  # type: ignore[no-untyped-def]
    quoted = '"' + role.replace('"', '""') + '"'

    def on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # On the raw asyncpg connection, outside SQLAlchemy's transaction: it lasts for
        # the connection's life.
        dbapi_connection.run_async(lambda connection: connection.execute(f"SET ROLE {quoted}"))

    return on_connect


async def publish_tree_heads(runtime: ServiceRuntime) -> None:
    settings: Settings = runtime.settings  # type: ignore[assignment]
    key = runtime.state["signing_key"]
    while True:
        await asyncio.sleep(settings.tree_head_interval_s)
        try:
            async with runtime.unit_of_work() as uow:
                locked = await uow.session.scalar(
                    sa.select(sa.func.pg_try_advisory_xact_lock(_TREE_HEAD_LOCK_KEY))
                )
                if not locked:
                    continue
                size = await handlers.publish_tree_head(uow, key, now=datetime.now(UTC))
            if size is not None:
                log.info("tree_head_published", tree_size=size)
                if runtime.relay is not None:
                    runtime.relay.wake()
        except Exception:
            # The next round tries again; nothing was published or stored.
            log.exception("tree_head_not_published")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = AuditRuntime(settings, subscription, background=[publish_tree_heads])
    runtime.state["signing_key"] = load_signing_key(settings)
    return build_app(
        runtime,
        title="Back office audit",
        description=(
            "The append-only record of every event and of every query of it: an RFC 9162 "
            "Merkle tree with Ed25519-signed tree heads, inclusion and consistency proofs."
        ),
        routers=[router],
    )
