"""The consume loop hands a batch handler each run of consecutive events of its types, in
order; any other event ends the run and is applied alone in its place, duplicates (inbox)
are skipped, and a batch handler must have a single-event handler to fall back on."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord

from bo_common.consumer import ConsumeLoop, current_records
from bo_common.envelope import Envelope, new_event
from bo_common.outbox import PlumbingSchema
from bo_common.settings import KafkaSettings
from bo_common.testing import consumed
from bo_common.tracing import cause_traces
from bo_common.unit_of_work import UnitOfWork


class _Result:
    def __init__(self, ids: list[uuid.UUID]) -> None:
        self._ids = ids

    def scalars(self) -> list[uuid.UUID]:
        return self._ids


class _Session:
    """The inbox's two statements: which ids were applied before (`seen`), and the insert of
    the others (kept in `inserted`)."""

    def __init__(self, seen: set[uuid.UUID]) -> None:
        self.seen = seen
        self.inserted: list[uuid.UUID] = []

    async def execute(self, statement: Any, parameters: Any = None) -> _Result:
        if parameters is None:  # the SELECT of the ids
            asked = statement.compile().params["ids"]
            return _Result([i for i in asked if i in self.seen])
        self.inserted.extend(row["event_id"] for row in parameters)
        return _Result([])


class _Uow:
    def __init__(self, seen: set[uuid.UUID]) -> None:
        self.session = _Session(seen)

    async def flush(self) -> None:
        pass


def _record(
    event: Envelope | bytes,
    offset: int,
    *,
    topic: str = "trade.events",
    headers: list[tuple[str, bytes]] | None = None,
) -> ConsumerRecord[bytes, bytes]:
    """A consumed record of an event, or of raw bytes (a depository's XML)."""
    value = event if isinstance(event, bytes) else event.to_bytes()
    return consumed(value, offset=offset, topic=topic, headers=headers)


def _consume_loop(**wiring: Any) -> ConsumeLoop:
    """A consume loop with these handlers, never started (no database, no broker)."""
    return ConsumeLoop(
        name="test",
        topics=["trade.events", "csd.status"],
        sessions=cast(Any, None),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        group_id="test",
        **{"handlers": {}} | wiring,
    )


def _event(type_: str, n: int) -> Envelope:
    return new_event(type=type_, source="test", subject=f"T-{n}", actor="test", data={"n": n})


def _loop(calls: list[tuple[str, list[int]]]) -> ConsumeLoop:
    def single(name: str) -> Any:
        async def handle(event: Envelope, uow: UnitOfWork) -> None:
            calls.append((name, [event.data["n"]]))

        return handle

    async def together(events: list[Envelope], uow: UnitOfWork) -> None:
        calls.append(("run", [event.data["n"] for event in events]))

    return _consume_loop(
        handlers={"t.a": single("a"), "t.b": single("b"), "t.c": single("c")},
        batch_handlers={"t.a": together, "t.b": together},
    )


async def test_runs_of_batch_types_are_applied_together_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(PlumbingSchema, "trace_columns", False)
    calls: list[tuple[str, list[int]]] = []
    loop = _loop(calls)
    events = [
        _event("t.a", 1),
        _event("t.b", 2),
        _event("t.a", 3),
        _event("t.c", 4),
        _event("t.a", 5),
        _event("t.x", 6),  # no handler: not work at all
        _event("t.b", 7),
    ]
    duplicate = _event("t.a", 8)
    events.insert(5, duplicate)
    uow = _Uow(seen={duplicate.id})
    work = [
        item
        for offset, event in enumerate(events)
        if (item := await loop._work_of(_record(event, offset), cast(Any, uow))) is not None
    ]
    await loop._apply_all(work, cast(Any, uow))
    assert calls == [("run", [1, 2, 3]), ("c", [4]), ("run", [5, 7])]
    # Only the new ones go into the inbox.
    assert uow.session.inserted == [e.id for e in events if e is not duplicate and e.type != "t.x"]


async def test_the_default_batch_handler_takes_runs_of_types_without_a_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A follower of every event type (the status view): runs of the types the default
    handler applies go to the default batch handler; a type with a handler of its own, or
    a batch handler of its own, ends the run."""
    monkeypatch.setattr(PlumbingSchema, "trace_columns", False)
    calls: list[tuple[str, list[int]]] = []

    async def own(event: Envelope, uow: UnitOfWork) -> None:
        calls.append(("own", [event.data["n"]]))

    async def default(event: Envelope, uow: UnitOfWork) -> None:
        calls.append(("default", [event.data["n"]]))

    async def default_run(events: list[Envelope], uow: UnitOfWork) -> None:
        calls.append(("default run", [event.data["n"] for event in events]))

    async def own_run(events: list[Envelope], uow: UnitOfWork) -> None:
        calls.append(("own run", [event.data["n"] for event in events]))

    loop = _consume_loop(
        handlers={"t.own": own, "t.batched": own},
        batch_handlers={"t.batched": own_run},
        default_handler=default,
        default_batch_handler=default_run,
    )
    events = [
        _event("t.x", 1),
        _event("t.y", 2),
        _event("t.own", 3),
        _event("t.z", 4),
        _event("t.batched", 5),
        _event("t.batched", 6),
        _event("t.x", 7),
    ]
    uow = _Uow(seen=set())
    work = [
        item
        for offset, event in enumerate(events)
        if (item := await loop._work_of(_record(event, offset), cast(Any, uow))) is not None
    ]
    await loop._apply_all(work, cast(Any, uow))
    assert calls == [
        ("default run", [1, 2]),
        ("own", [3]),
        ("default run", [4]),
        ("own run", [5, 6]),
        ("default run", [7]),
    ]


async def test_runs_of_raw_messages_go_to_their_topics_batch_handler_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(PlumbingSchema, "trace_columns", False)
    calls: list[tuple[str, list[Any]]] = []

    async def raw_one(value: bytes, uow: UnitOfWork) -> None:
        calls.append(("raw", [value]))

    async def raw_run(values: list[bytes], uow: UnitOfWork) -> None:
        calls.append(("raw run", list(values)))

    async def one(event: Envelope, uow: UnitOfWork) -> None:
        calls.append(("event", [event.data["n"]]))

    loop = _consume_loop(
        handlers={"t.a": one},
        raw_handlers={"csd.status": raw_one},
        raw_batch_handlers={"csd.status": raw_run},
    )
    records = [
        _record(b"<1/>", 0, topic="csd.status"),
        _record(b"<2/>", 1, topic="csd.status"),
        _record(_event("t.a", 3), 2),
        _record(b"<4/>", 3, topic="csd.status"),
        _record(b"<5/>", 4, topic="csd.status"),
        _record(b"<6/>", 5, topic="csd.status"),
    ]
    uow = _Uow(seen=set())
    work = [
        item
        for record in records
        if (item := await loop._work_of(record, cast(Any, uow))) is not None
    ]
    await loop._apply_all(work, cast(Any, uow))
    assert calls == [
        ("raw run", [b"<1/>", b"<2/>"]),
        ("event", [3]),
        ("raw run", [b"<4/>", b"<5/>", b"<6/>"]),
    ]


async def test_a_run_knows_its_records_and_names_each_event_as_a_cause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch handler finds the record of each event it was given (the audit log keeps
    where each was read), and each event of the run is a cause in its own record's trace:
    what the run publishes continues the trace of the event that caused it."""
    monkeypatch.setattr(PlumbingSchema, "trace_columns", False)
    seen: list[list[tuple[int, uuid.UUID]]] = []

    async def one(event: Envelope, uow: UnitOfWork) -> None:
        pass

    async def together(events: list[Envelope], uow: UnitOfWork) -> None:
        records = current_records.get()
        assert records is not None
        seen.append([(r.offset, Envelope.from_bytes(r.value or b"").id) for r in records])
        assert [Envelope.from_bytes(r.value or b"").id for r in records] == [e.id for e in events]

    loop = _consume_loop(handlers={"t.a": one, "t.c": one}, batch_handlers={"t.a": together})
    events = [_event("t.a", 1), _event("t.a", 2), _event("t.c", 3), _event("t.a", 4)]
    trace_ids = [f"{n:032x}" for n in (11, 12, 13, 14)]
    records = [
        _record(
            event, 10 + n, headers=[("traceparent", f"00-{trace_ids[n]}-{'7' * 16}-01".encode())]
        )
        for n, event in enumerate(events)
    ]
    uow = _Uow(seen=set())
    work = [item for r in records if (item := await loop._work_of(r, cast(Any, uow))) is not None]
    token = cause_traces.set({})
    try:
        await loop._apply_all(work, cast(Any, uow))
        traces = cause_traces.get()
    finally:
        cause_traces.reset(token)
    assert seen == [[(10, events[0].id), (11, events[1].id)], [(13, events[3].id)]]
    assert current_records.get() is None
    assert traces is not None and set(traces) == {e.id for e in events}
    for event, trace_id in zip(events, trace_ids, strict=True):
        _, trace, span, flags = traces[event.id].split("-")
        assert (trace, flags) == (trace_id, "01") and span != "7" * 16


async def _together(items: list[Any], uow: UnitOfWork) -> None:
    pass


@pytest.mark.parametrize(
    ("wiring", "error"),
    [
        ({"batch_handlers": {"t.a": _together}}, "needs a handler"),
        ({"default_batch_handler": _together}, "needs a default handler"),
        ({"raw_batch_handlers": {"csd.status": _together}}, "needs a raw handler"),
    ],
)
def test_a_batch_handler_needs_the_handler_it_falls_back_on(
    wiring: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        _consume_loop(**wiring)
