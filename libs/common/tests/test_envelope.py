"""The event envelope: causation, (de)serialisation and what it refuses. Pure."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from bo_common.contracts.gateway import TradeCaptured
from bo_common.envelope import Envelope, new_event

WHEN = datetime(2026, 3, 3, 14, 30, tzinfo=UTC)


def captured(correlation_id: str | None = None) -> Envelope:
    return new_event(
        type="trade.captured",
        source="gateway",
        subject="T-1",
        data={"trade_id": "T-1"},
        actor="trader-1",
        correlation_id=correlation_id,
        time=WHEN,
    )


def fields(**overrides: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "type": "trade.captured",
        "version": 1,
        "source": "gateway",
        "subject": "T-1",
        "time": WHEN,
        "correlation_id": "C-1",
        "actor": "trader-1",
        "data": {},
        **overrides,
    }


def test_a_caused_event_inherits_the_causes_correlation_id_and_names_its_cause() -> None:
    cause = captured(correlation_id="C-42")

    effect = new_event(
        type="settlement.instructed",
        source="settlement",
        subject="O-9",
        data={},
        actor="settlement",
        cause=cause,
    )

    assert effect.correlation_id == "C-42"
    assert effect.causation_id == cause.id
    assert effect.id != cause.id


def test_an_explicit_correlation_id_wins_over_the_causes() -> None:
    effect = new_event(
        type="ledger.posted",
        source="ledger",
        subject="T-1",
        data={},
        actor="ledger",
        cause=captured(correlation_id="C-42"),
        correlation_id="C-7",
    )

    assert effect.correlation_id == "C-7"


def test_an_event_without_a_cause_is_correlated_by_its_subject() -> None:
    event = captured()

    assert event.correlation_id == "T-1"
    assert event.causation_id is None


def test_an_envelope_round_trips_through_bytes() -> None:
    event = captured(correlation_id="C-1")

    assert Envelope.from_bytes(event.to_bytes()) == event


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError, match="UTC offset"):
        Envelope(**fields(time=datetime(2026, 3, 3, 14, 30)))  # type: ignore[arg-type]


def test_a_time_with_another_offset_is_stored_in_utc() -> None:
    paris = timezone(timedelta(hours=1))

    event = Envelope(**fields(time=datetime(2026, 3, 3, 15, 30, tzinfo=paris)))  # type: ignore[arg-type]

    assert event.time == WHEN
    assert event.time.tzinfo == UTC


def test_extra_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Envelope(**fields(priority="high"))  # type: ignore[arg-type]


def test_extra_fields_in_bytes_are_refused() -> None:
    raw = json.loads(captured().to_bytes())
    raw["priority"] = "high"

    with pytest.raises(ValidationError):
        Envelope.from_bytes(json.dumps(raw).encode())


def test_decimals_of_a_contract_travel_as_strings_and_come_back_exact() -> None:
    trade = TradeCaptured(
        trade_id="T-1",
        client_trade_id="CT-1",
        account="ACC-1",
        side="BUY",
        isin="US0378331005",
        quantity=Decimal("100.12345678"),
        price=Decimal("180.10"),
        currency="USD",
        gross_amount=Decimal("18032.2345660780"),
        trade_date=date(2026, 3, 3),
        trade_time=WHEN,
        venue="XNYS",
        counterparty_lei="784F5XWPLTWKTBV3E584",
        settlement_type="DVP",
    )

    event = new_event(
        type="trade.captured",
        source="gateway",
        subject="T-1",
        data=trade.model_dump(mode="json"),
        actor="trader-1",
    )
    wire = json.loads(event.to_bytes())

    assert wire["data"]["quantity"] == "100.12345678"
    assert wire["data"]["price"] == "180.10"
    assert wire["data"]["gross_amount"] == "18032.2345660780"
    assert TradeCaptured.model_validate(Envelope.from_bytes(event.to_bytes()).data) == trade
