"""One database transaction: the session, the events it causes (outbox) and who caused it."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bo_common.outbox import Outbox


class UnitOfWork:
    """Used by HTTP handlers (`async with uow:` then `await uow.commit()`) and, already
    open, by the consume loop, which commits a whole batch itself."""

    session: AsyncSession
    outbox: Outbox

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @classmethod
    def bound(cls, session: AsyncSession) -> UnitOfWork:
        uow = cls.__new__(cls)
        uow.session = session
        uow.outbox = Outbox(session)
        return uow

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._sessions()
        self.outbox = Outbox(self.session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() ends any uncommitted transaction without expiring what was loaded, so
        # results read inside the unit of work stay usable after it.
        await self.session.close()

    async def flush(self) -> None:
        await self.outbox.flush()
        await self.session.flush()

    async def commit(self) -> None:
        await self.flush()
        await self.session.commit()
