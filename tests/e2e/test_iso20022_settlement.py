"""Settlement and the CSD simulator speak ISO 20022: sese.023 instructions on
csd.instructions, sese.024 status advice and sese.025 confirmations on csd.status, every
one schema-valid; a schema-invalid status message is dead-lettered with the validation
error; the simulator's rules drive each outcome end to end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

import bo_iso20022
from bo_tools.stack import Stack
from tests.conftest import a_trade, auth
from tests.e2e.test_pipeline import wait_for_state

pytestmark = pytest.mark.e2e

# ISINs no other test trades, so that a rule on one touches only this file's trades.
MICROSOFT = "US5949181045"
AMAZON = "US0231351067"
NVIDIA = "US67066G1040"


@pytest.fixture
async def simulator(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("csd_simulator"), timeout=10) as client:
        yield client
        (await client.put("/v1/rules", json=[])).raise_for_status()


async def post_trade(gateway: httpx.AsyncClient, keys: dict[str, str], **overrides: str) -> str:
    response = await gateway.post(
        "/v1/trades", json=a_trade(**overrides), headers=auth(keys["trader"])
    )
    assert response.status_code == 201, response.text
    trade_id: str = response.json()["trade_id"]
    return trade_id


async def instruction_of(db: AsyncEngine, trade_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        async with db.connect() as connection:
            row = (
                (
                    await connection.execute(
                        sa.text("SELECT * FROM instructions WHERE :t = ANY(trade_ids)"),
                        {"t": trade_id},
                    )
                )
                .mappings()
                .one_or_none()
            )
        if row is not None:
            return dict(row)
        if time.monotonic() > deadline:
            raise AssertionError(f"trade {trade_id} was not instructed")
        await asyncio.sleep(0.1)


async def sese023_payloads(db: AsyncEngine) -> list[bytes]:
    async with db.connect() as connection:
        return list(
            (
                await connection.execute(
                    sa.text(
                        "SELECT payload FROM outbox WHERE topic = 'csd.instructions' ORDER BY seq"
                    )
                )
            ).scalars()
        )


async def status_messages_of(
    stack: Stack, instruction_id: str, count: int, timeout_s: float = 15
) -> list[bytes]:
    """The messages the simulator sent on csd.status about the instruction."""
    consumer = AIOKafkaConsumer(
        "csd.status",
        bootstrap_servers=stack.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    found: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(found) < count:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found += [
                    r.value
                    for r in records
                    if r.value is not None and instruction_id.encode() in r.value
                ]
    finally:
        await consumer.stop()
    return found


async def test_every_sese023_settlement_sends_validates_against_the_xsd(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    # 3 x 0.3333333333 = 0.9999999999 USD: the instruction settles 1.00 (rounded half to
    # even to the cent), and the row, the message and the settled amount agree.
    # An ISIN no other trade uses, so that netting leaves the trade on its own.
    trade_id = await post_trade(
        gateway, keys, quantity="3", price="0.3333333333", isin="US7427181091"
    )
    await wait_for_state(gateway, keys["trader"], trade_id, "settled")
    db = databases["settlement"]
    row = await instruction_of(db, trade_id)
    assert row["amount"] == Decimal("1.00")
    assert len(row["instruction_id"]) == 32

    payloads = await sese023_payloads(db)
    assert payloads
    for payload in payloads:
        bo_iso20022.validate(payload)
        assert bo_iso20022.message_type(payload) == bo_iso20022.SESE_023
    ours = [
        m
        for m in (bo_iso20022.parse_sese023(p) for p in payloads)
        if m.instruction_id == row["instruction_id"]
    ]
    assert len(ours) == 1
    message = ours[0]
    assert message.trade_ids == (trade_id,)
    assert (message.movement, message.payment) == ("RECE", "APMT")
    assert (message.quantity, message.settlement_amount, message.currency) == (
        Decimal("3"),
        Decimal("1"),
        "USD",
    )
    assert message.depository_bic == "DTCYUS33XXX"
    assert (message.safekeeping_account, message.cash_account) == (
        "SAFE-US-A-001",
        "CASH-US-A-001",
    )
    assert message.trade_date == date.fromisoformat(a_trade()["trade_date"])
    assert message.settlement_date == row["settlement_date"]

    async with db.connect() as connection:
        settled = (
            await connection.execute(
                sa.text(
                    "SELECT payload FROM outbox WHERE event_type = 'settlement.settled' "
                    "AND topic = 'settlement.events' ORDER BY seq DESC LIMIT 200"
                )
            )
        ).scalars()
        amounts = [
            json.loads(p)["data"]["amount"] for p in settled if json.loads(p)["subject"] == trade_id
        ]
    assert [Decimal(a) for a in amounts] == [Decimal("1")]


async def dead_letters_about(
    stack: Stack, topic: str, marker: str, count: int
) -> list[dict[str, Any]]:
    """The dead letters on `topic` whose original value contains `marker` (up to count)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    dead: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(dead) < count:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                dead += [
                    d
                    for d in (json.loads(r.value or b"{}") for r in records)
                    if marker in str(d.get("value"))
                ]
    finally:
        await consumer.stop()
    return dead


def invalid_sese025(instruction_id: str) -> bytes:
    """A sese.025 whose settled amount has 6 decimals (the schema allows 5)."""
    valid = bo_iso20022.render_sese025(
        bo_iso20022.SettlementConfirmation(
            instruction_id=instruction_id,
            status="settled",
            movement="RECE",
            payment="APMT",
            isin="US0378331005",
            settled_quantity=Decimal("100"),
            settled_amount=Decimal("18925.12345"),
            currency="USD",
            settlement_date=date(2026, 3, 4),
        )
    )
    assert b"18925.12345" in valid
    return valid.replace(b"18925.12345", b"18925.123456")


async def test_a_schema_invalid_status_message_is_dead_lettered_with_the_validation_error(
    stack: Stack, keys: dict[str, str], gateway: httpx.AsyncClient
) -> None:
    marker = f"{time.time_ns():032x}"[-32:]
    bad_schema = invalid_sese025(marker)
    not_xml = f"<<not xml {marker}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("csd.status", bad_schema, key=marker.encode())
        await producer.send_and_wait("csd.status", not_xml, key=marker.encode())
    finally:
        await producer.stop()

    dead = await dead_letters_about(stack, "csd.status.dlq", marker, 2)
    by_value = {d["value"]: d for d in dead}
    assert set(by_value) == {bad_schema.decode(), not_xml.decode()}, dead
    schema_letter = by_value[bad_schema.decode()]
    assert schema_letter["consumer"] == "settlement"
    assert schema_letter["attempts"] == 1
    assert "sese.025.001.11: /Document/SctiesSttlmTxConf/SttldAmt/Amt:" in schema_letter["error"]
    assert "fraction digits" in schema_letter["error"]
    assert "PoisonMessage" in by_value[not_xml.decode()]["error"]

    # Settlement goes on: the next trade settles.
    trade_id = await post_trade(gateway, keys)
    await wait_for_state(gateway, keys["trader"], trade_id, "settled")


async def test_matched_then_settled_through_the_simulator_with_valid_status_messages(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
    simulator: httpx.AsyncClient,
) -> None:
    rules = [{"isin": MICROSOFT, "outcome": "settle"}]
    assert (await simulator.put("/v1/rules", json=rules)).status_code == 200

    trade_id = await post_trade(gateway, keys, isin=MICROSOFT, side="SELL")
    view = await wait_for_state(gateway, keys["trader"], trade_id, "settled")
    types = [entry["type"] for entry in view["timeline"]]  # type: ignore[union-attr]
    assert types.index("settlement.matched") < types.index("settlement.settled")

    instruction = await instruction_of(databases["settlement"], trade_id)
    assert (instruction["state"], instruction["direction"]) == ("settled", "DELIVER")
    messages = await status_messages_of(stack, instruction["instruction_id"], 2)
    for message in messages:
        bo_iso20022.validate(message)
    parsed = [bo_iso20022.parse(m) for m in messages]
    assert [(type(m).__name__, m.status) for m in parsed] == [  # type: ignore[union-attr]
        ("StatusAdvice", "matched"),
        ("SettlementConfirmation", "settled"),
    ]
    confirmation = parsed[1]
    assert isinstance(confirmation, bo_iso20022.SettlementConfirmation)
    assert (confirmation.movement, confirmation.settled_quantity) == ("DELI", Decimal("100"))
    assert confirmation.trade_ids == (trade_id,)


async def test_a_lack_of_securities_rule_fails_the_trade_with_its_reason(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
    simulator: httpx.AsyncClient,
) -> None:
    rules = [{"isin": AMAZON, "outcome": "fail", "reason": "LACK"}]
    assert (await simulator.put("/v1/rules", json=rules)).status_code == 200

    trade_id = await post_trade(gateway, keys, isin=AMAZON)
    view = await wait_for_state(gateway, keys["trader"], trade_id, "failed")
    types = [entry["type"] for entry in view["timeline"]]  # type: ignore[union-attr]
    assert "settlement.matched" in types and "settlement.settled" not in types

    instruction = await instruction_of(databases["settlement"], trade_id)
    assert (instruction["state"], instruction["status_reason"]) == ("failed", "LACK")
    messages = await status_messages_of(stack, instruction["instruction_id"], 2)
    parsed = [bo_iso20022.parse(m) for m in messages]
    assert parsed == [
        bo_iso20022.StatusAdvice(instruction_id=instruction["instruction_id"], status="matched"),
        bo_iso20022.StatusAdvice(
            instruction_id=instruction["instruction_id"], status="failed", reason_code="LACK"
        ),
    ]


async def test_a_partial_settlement_settles_part_and_leaves_the_remainder_open(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
    simulator: httpx.AsyncClient,
) -> None:
    rules = [{"isin": NVIDIA, "outcome": "partial", "settled_fraction": "0.4"}]
    assert (await simulator.put("/v1/rules", json=rules)).status_code == 200

    trade_id = await post_trade(gateway, keys, isin=NVIDIA, quantity="100", price="120.5")
    await wait_for_state(gateway, keys["trader"], trade_id, "partially_settled")

    instruction = await instruction_of(databases["settlement"], trade_id)
    assert instruction["state"] == "partially_settled"
    messages = await status_messages_of(stack, instruction["instruction_id"], 2)
    confirmation = bo_iso20022.parse(messages[-1])
    assert isinstance(confirmation, bo_iso20022.SettlementConfirmation)
    assert (
        confirmation.status,
        confirmation.settled_quantity,
        confirmation.remaining_quantity,
        confirmation.settled_amount,
    ) == ("partially_settled", Decimal("40"), Decimal("60"), Decimal("4820"))


async def test_a_rule_with_a_reason_that_is_no_sese024_code_is_refused(
    simulator: httpx.AsyncClient,
) -> None:
    response = await simulator.put("/v1/rules", json=[{"outcome": "fail", "reason": "BROKE"}])
    assert response.status_code == 422


async def test_a_schema_invalid_instruction_is_dead_lettered_by_the_depository(
    stack: Stack,
    keys: dict[str, str],
    gateway: httpx.AsyncClient,
    databases: dict[str, AsyncEngine],
) -> None:
    """The simulator validates what it receives as a depository would: a sese.023 that
    breaks its schema goes to csd.instructions.dlq with the error, and is not answered."""
    trade_id = await post_trade(gateway, keys, isin=MICROSOFT)
    instruction = await instruction_of(databases["settlement"], trade_id)
    sent = [p for p in await sese023_payloads(databases["settlement"]) if trade_id.encode() in p]
    assert sent, "the trade's sese.023 is in the outbox"
    marker = f"BAD{time.time_ns():013d}"[:16]
    # The same message under a new reference, with an ISIN the schema's pattern refuses.
    bad = sent[-1].replace(instruction["instruction_id"].encode(), marker.encode())
    assert f"<ISIN>{MICROSOFT}</ISIN>".encode() in bad, bad
    bad = bad.replace(f"<ISIN>{MICROSOFT}</ISIN>".encode(), b"<ISIN>US59491810</ISIN>")
    with pytest.raises(bo_iso20022.InvalidMessage):
        bo_iso20022.parse(bad)
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("csd.instructions", bad, key=marker.encode())
    finally:
        await producer.stop()

    dead = await dead_letters_about(stack, "csd.instructions.dlq", marker, 1)
    assert len(dead) == 1, dead
    assert dead[0]["consumer"] == "csd_simulator"
    assert "sese.023.001.11" in dead[0]["error"] and "ISIN" in dead[0]["error"], dead[0]
    # No status was sent about it, and the depository goes on settling.
    assert await status_messages_of(stack, marker, 1, timeout_s=2) == []
    next_trade = await post_trade(gateway, keys, isin=MICROSOFT)
    await wait_for_state(gateway, keys["trader"], next_trade, "settled")
