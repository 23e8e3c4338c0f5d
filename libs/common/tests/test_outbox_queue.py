"""What a unit of work queues (events and insert_later rows) and what a failed attempt's
discard takes back; the flush writes the rows one statement per table, before the events."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bo_common.envelope import new_event
from bo_common.outbox import Outbox, PlumbingSchema

EVALUATIONS = sa.table("evaluations", sa.column("trade_id"), sa.column("version"))
TIMELINE = sa.table("trade_timeline", sa.column("event_id"))


class _Session:
    """Records what the outbox executes."""

    def __init__(self) -> None:
        self.executed: list[tuple[str, list[dict[str, Any]]]] = []

    async def execute(self, statement: Any, parameters: Any = None) -> None:
        self.executed.append((statement.table.name, list(parameters or [])))


def _event(n: int) -> Any:
    return new_event(
        type="trade.captured", source="test", subject=f"T-{n}", actor="test", data={"n": n}
    )


async def test_discard_takes_back_rows_and_events_of_the_failed_attempt_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(PlumbingSchema, "trace_columns", False)
    session = _Session()
    outbox = Outbox(cast(AsyncSession, session))
    outbox.insert_later(EVALUATIONS, {"trade_id": "T-1", "version": 1})
    outbox.put(_event(1), topic="compliance.events", key="A")
    mark = outbox.mark()
    outbox.insert_later(EVALUATIONS, {"trade_id": "T-2", "version": 1})
    outbox.insert_later(TIMELINE, {"event_id": uuid.uuid4()})
    outbox.put(_event(2), topic="compliance.events", key="A")
    outbox.discard(mark)
    outbox.insert_later(TIMELINE, {"event_id": uuid.uuid4()})
    outbox.insert_later(EVALUATIONS, {"trade_id": "T-3", "version": 1})

    await outbox.flush()

    tables = [(name, [row.get("trade_id") for row in rows]) for name, rows in session.executed]
    assert tables == [
        ("evaluations", ["T-1", "T-3"]),
        ("trade_timeline", [None]),
        ("outbox", [None]),
    ]
    assert len(session.executed[2][1]) == 1  # the first event only

    session.executed.clear()
    await outbox.flush()  # nothing queued any more
    assert session.executed == []
