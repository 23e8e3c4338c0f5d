"""Runs of captures and of compliance decisions applied together (the batch handlers the
consume loop calls) store and publish exactly what applying them one at a time does: the
same obligations, decisions, cancellations, refusals, instructions and events, in the same
order. Against the real PostgreSQL, two settlement databases built by the migrations, with
SSIs in force, not yet in force and missing; amendments, cancellations (also before their
trade), decisions before their trade, on stale versions, and redeliveries interleaved.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

import bo_iso20022
from bo_common.contracts import compliance as compliance_contract
from bo_common.contracts import gateway as gateway_contract
from bo_common.db import make_engine, make_sessionmaker
from bo_common.envelope import Envelope, new_event
from bo_common.unit_of_work import UnitOfWork
from bo_tools.stack import migrated_database
from csd_simulator.domain import Rule, answer
from settlement import handlers
from settlement.consumers import subscription

pytestmark = pytest.mark.slow

ACCOUNTS = ["ACC-001", "ACC-002", "ACC-003"]
ISINS = ["US0378331005", "US5949181045", "GB0002634946"]
# The first has SSIs for both markets (a second US version from a later date), the second
# only for the UK, the third none.
LEIS = ["784F5XWPLTWKTBV3E584", "984500DEM0NAMEMATC09", "W22LROWP2IHZNBB6K528"]
DECISIONS = [
    compliance_contract.TRADE_CLEARED,
    compliance_contract.TRADE_CLEARED,
    compliance_contract.TRADE_HELD,
    "compliance.trade_released",
    "compliance.trade_rejected",
]
TRADE_DATES = [date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 2)]


def _terms(rng: random.Random) -> dict[str, Any]:
    quantity = Decimal(rng.randint(1, 5_000))
    price = Decimal(rng.randint(9_000, 11_000)) / 100
    trade_date = rng.choice(TRADE_DATES)
    return {
        "side": rng.choice(["BUY", "SELL"]),
        "isin": rng.choice(ISINS),
        "quantity": str(quantity),
        "price": str(price),
        "currency": "USD",
        "gross_amount": str(quantity * price),
        "trade_date": trade_date.isoformat(),
        "trade_time": datetime(
            trade_date.year, trade_date.month, trade_date.day, 15, tzinfo=UTC
        ).isoformat(),
        "venue": "XNYS",
        "settlement_type": rng.choice(["DVP", "DVP", "FOP"]),
        "counterparty_lei": rng.choice(LEIS),
    }


def events(seed: int, count: int, at: datetime) -> list[Envelope]:
    rng = random.Random(seed)
    # Trade ids made up front, so that a decision or a cancellation can come first.
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(count)]
    captured: dict[str, dict[str, Any]] = {}
    cancelled: set[str] = set()
    out: list[Envelope] = []

    def event(type_: str, trade_id: str, data: dict[str, Any], n: int) -> Envelope:
        source = "compliance_monitor" if type_.startswith("compliance.") else "gateway"
        return new_event(
            type=type_,
            source=source,
            subject=trade_id,
            actor="test",
            data=data,
            # Decisions on one trade version are told apart by their time.
            time=at + timedelta(milliseconds=n),
        )

    for n in range(count):
        roll = rng.random()
        live = [t for t in captured if t not in cancelled]
        if roll < 0.35 or not captured:
            trade_id = next(t for t in ids if t not in captured)
            data = {
                "trade_id": trade_id,
                "client_trade_id": f"T-{seed}-{n}",
                "account": rng.choice(ACCOUNTS),
                "version": 1,
                **_terms(rng),
            }
            captured[trade_id] = data
            out.append(event(gateway_contract.TRADE_CAPTURED, trade_id, data, n))
        elif roll < 0.75:
            # On a trade's current version, now and then on an older one, or on a trade
            # still to come.
            pick = rng.random()
            if pick < 0.1:
                trade_id, version = next(t for t in reversed(ids) if t not in captured), 1
            else:
                trade_id = rng.choice(list(captured))
                version = captured[trade_id]["version"]
                if pick < 0.2 and version > 1:
                    version -= 1
            data = {"trade_id": trade_id, "version": version, "account": "ACC-001"}
            out.append(event(rng.choice(DECISIONS), trade_id, data, n))
        elif roll < 0.85 and live:
            trade_id = rng.choice(live)
            data = {
                **captured[trade_id],
                "quantity": str(rng.randint(1, 5_000)),
                "version": captured[trade_id]["version"] + 1,
                "reason": "test",
                "changed_fields": ["quantity"],
            }
            data["gross_amount"] = str(Decimal(data["quantity"]) * Decimal(data["price"]))
            captured[trade_id] = data
            out.append(event(gateway_contract.TRADE_AMENDED, trade_id, data, n))
        elif roll < 0.92:
            if live and rng.random() < 0.8:
                trade_id = rng.choice(live)
            else:  # before its trade
                trade_id = next(t for t in reversed(ids) if t not in captured)
            if trade_id in cancelled:
                continue
            current = captured.get(trade_id)
            cancelled.add(trade_id)
            data = {
                "trade_id": trade_id,
                "client_trade_id": current["client_trade_id"] if current else "T-early",
                "account": current["account"] if current else "ACC-001",
                "version": current["version"] if current else 1,
                "reason": "test",
            }
            out.append(event(gateway_contract.TRADE_CANCELLED, trade_id, data, n))
        elif out:
            out.append(rng.choice(out))  # a redelivery of an earlier event
    return out


async def _settlement_database(name: str) -> AsyncEngine:
    url = await asyncio.to_thread(migrated_database, name, "settlement")
    engine = make_engine(url, pool_size=2)
    sessions = make_sessionmaker(engine)
    ssis = [
        (LEIS[0], "US", date(2020, 1, 1)),
        (LEIS[0], "US", date(2026, 12, 3)),
        (LEIS[0], "UK", date(2020, 1, 1)),
        (LEIS[1], "UK", date(2020, 1, 1)),
    ]
    for n, (lei, market, effective_from) in enumerate(ssis):
        await handlers.add_ssi(
            UnitOfWork(sessions),
            counterparty_lei=lei,
            market=market,
            depository="DTC" if market == "US" else "CREST",
            custodian_bic="CHASUS33XXX" if market == "US" else "BARCGB22XXX",
            safekeeping_account=f"SAFE-{n}",
            cash_account=f"CASH-{n}",
            effective_from=effective_from,
        )
    return engine


@pytest.fixture(scope="module")
async def engines() -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    one = await _settlement_database("settlement_one_by_one")
    runs = await _settlement_database("settlement_runs")
    yield one, runs
    await one.dispose()
    await runs.dispose()


def runs_of(chunk: list[Envelope]) -> list[list[Envelope]]:
    """The chunk as the consume loop applies it: each run of consecutive events of one batch
    handler together, any other event alone."""
    groups: list[list[Envelope]] = []
    for event in chunk:
        batch = subscription.batch_handlers.get(event.type)
        if (
            batch is not None
            and groups
            and subscription.batch_handlers.get(groups[-1][0].type) is batch
        ):
            groups[-1].append(event)
        else:
            groups.append([event])
    return groups


async def apply(
    sessions: async_sessionmaker[Any], chunks: list[list[Envelope]], *, in_runs: bool
) -> int:
    """Each chunk in one transaction, as a consumed batch: event by event, or in runs.
    Returns how many runs had more than one event."""
    together = 0
    for chunk in chunks:
        async with sessions() as session, session.begin():
            uow = UnitOfWork.bound(session)
            for group in runs_of(chunk) if in_runs else [[event] for event in chunk]:
                if len(group) > 1:
                    await subscription.batch_handlers[group[0].type](group, uow)
                    together += 1
                else:
                    await subscription.handlers[group[0].type](group[0], uow)
            await uow.flush()
    return together


STATE = {
    "obligations": "SELECT obligation_id, trade_id, account, side, isin, quantity, amount, "
    "currency, trade_date, settlement_date, cycle_days, market, counterparty_lei, "
    "settlement_type, state, instruction_id, correlation_id, version, cancelled_at IS NOT "
    "NULL, cancel_reason FROM obligations ORDER BY trade_id",
    "decisions": "SELECT trade_id, version, decision, decided_at FROM compliance_decisions "
    "ORDER BY trade_id, version",
    "cancellations": "SELECT trade_id, account, version, reason, correlation_id "
    "FROM cancellations ORDER BY trade_id",
    "refused": "SELECT refusal_id, trade_id, change, version, reason FROM refused_changes "
    "ORDER BY refusal_id",
    "instructions": "SELECT instruction_id, trade_ids, account, direction, payment, isin, "
    "quantity, amount, currency, settlement_date, depository, counterparty_lei, state, "
    "credit_debit, ssi_id, settled_quantity, settled_amount, status_reason FROM instructions "
    "ORDER BY instruction_id",
}


async def state(engine: AsyncEngine) -> dict[str, Any]:
    found: dict[str, Any] = {}
    async with engine.connect() as connection:
        for name, sql in STATE.items():
            found[name] = [tuple(row) for row in await connection.execute(sa.text(sql))]
        found["events"] = []
        published = await connection.execute(
            sa.text("SELECT event_type, topic, key, payload FROM outbox ORDER BY seq")
        )
        for event_type, topic, key, payload in published:
            if event_type == "sese.023" or not payload.startswith(b"{"):
                found["events"].append((event_type, topic, key, bytes(payload)))
                continue
            envelope = json.loads(payload)
            found["events"].append(
                (
                    event_type,
                    topic,
                    key,
                    envelope["subject"],
                    envelope["causation_id"],
                    envelope["data"],
                )
            )
    return found


@pytest.mark.parametrize(("seed", "gross"), [(1, True), (2, False), (3, True)])
async def test_runs_apply_as_one_at_a_time(
    engines: tuple[AsyncEngine, AsyncEngine],
    seed: int,
    gross: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "GROSS_WHEN_READY", gross)
    one, runs = engines
    sequence = events(seed, 240, datetime(2026, 12, 2, 16, tzinfo=UTC))
    rng = random.Random(seed)
    chunks: list[list[Envelope]] = []
    rest = list(sequence)
    while rest:
        size = rng.choice([1, 4, 25, 80])
        chunks.append(rest[:size])
        rest = rest[size:]
    await apply(make_sessionmaker(one), chunks, in_runs=False)
    together = await apply(make_sessionmaker(runs), chunks, in_runs=True)
    expected, got = await state(one), await state(runs)
    # The sequence gives every path work.
    assert together > 10
    states = {row[14] for row in expected["obligations"]}
    assert {"needs_ssi", "cancelled"} <= states
    assert states & {"instructed", "ready"}
    assert expected["refused"] or not gross
    assert any(row[18] for row in expected["obligations"])  # trades cancelled
    for name in expected:
        assert got[name] == expected[name], name


def _rendered(answer: bo_iso20022.StatusAdvice | bo_iso20022.SettlementConfirmation) -> bytes:
    if isinstance(answer, bo_iso20022.StatusAdvice):
        return bo_iso20022.render_sese024(answer)
    return bo_iso20022.render_sese025(answer)


async def test_runs_of_depository_statuses_apply_as_one_at_a_time(
    engines: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The depository's answers to the instructions (matched, pending, failed, settled in
    full or in parts, and repeats), each instruction's in order but interleaved with the
    others', applied one at a time and in runs (apply_csd_statuses)."""
    monkeypatch.setattr(handlers, "GROSS_WHEN_READY", True)
    one, runs = engines
    async with one.connect() as connection:
        before = await connection.scalar(sa.text("SELECT coalesce(max(seq), 0) FROM outbox"))
    chunks = [events(11, 1000, datetime(2026, 12, 2, 17, tzinfo=UTC))]
    await apply(make_sessionmaker(one), chunks, in_runs=False)
    await apply(make_sessionmaker(runs), chunks, in_runs=True)
    async with one.connect() as connection:
        sent = (
            await connection.execute(
                sa.text("SELECT payload FROM outbox WHERE seq > :s AND event_type = 'sese.023'"),
                {"s": before},
            )
        ).scalars()
        instructions = [bo_iso20022.parse(payload) for payload in sent]
    assert len(instructions) > 20
    rng = random.Random(11)
    outcomes = [
        Rule(outcome="settle"),
        Rule(outcome="fail", reason="MONY"),
        Rule(outcome="partial", settled_fraction=Decimal("0.3")),
        Rule(outcome="pending"),
        Rule(outcome="match_only"),
    ]
    queues = []
    for instruction in instructions:
        assert isinstance(instruction, bo_iso20022.SettlementInstruction)
        answers = [_rendered(a) for a in answer(instruction, [rng.choice(outcomes)])]
        if rng.random() < 0.3:
            answers.append(answers[-1])  # a repeat
        if rng.random() < 0.3:  # the rest after a partial settlement, or settled after all
            answers.extend(_rendered(a) for a in answer(instruction, [outcomes[0]])[1:])
        queues.append(answers)
    statuses: list[bytes] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        statuses.append(queue.pop(0))
    sizes = [1, 3, 8, 40]
    status_chunks = []
    while statuses:
        size = rng.choice(sizes)
        status_chunks.append(statuses[:size])
        statuses = statuses[size:]
    runs_of_many = 0
    for engine, in_runs in ((one, False), (runs, True)):
        for chunk in status_chunks:
            async with make_sessionmaker(engine)() as session, session.begin():
                uow = UnitOfWork.bound(session)
                if in_runs:
                    await handlers.apply_csd_statuses(chunk, uow)
                    runs_of_many += len(chunk) > 1
                else:
                    for value in chunk:
                        await handlers.apply_csd_status(value, uow)
                await uow.flush()
    assert runs_of_many > 5
    expected, got = await state(one), await state(runs)
    states = {row[12] for row in expected["instructions"]}
    assert {"settled", "partially_settled", "failed", "matched"} <= states
    for name in expected:
        assert got[name] == expected[name], name
