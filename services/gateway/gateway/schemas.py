"""HTTP request and response models of the gateway."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from gateway.domain import valid_currency, valid_isin, valid_lei

Isin = Annotated[str, AfterValidator(valid_isin)]
Lei = Annotated[str, AfterValidator(valid_lei)]
Currency = Annotated[str, AfterValidator(valid_currency)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-/]+$")]
PositiveAmount = Annotated[
    Decimal, Field(gt=0, max_digits=28, decimal_places=10, allow_inf_nan=False)
]


class TradeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "client_trade_id": "FO-2026-000123",
                    "account": "ACC-001",
                    "side": "BUY",
                    "isin": "US0378331005",
                    "quantity": "100",
                    "price": "189.25",
                    "currency": "USD",
                    "trade_date": "2026-11-20",
                    "trade_time": "2026-11-20T14:31:07.123Z",
                    "venue": "XNYS",
                    "counterparty_lei": "784F5XWPLTWKTBV3E584",
                    "settlement_type": "DVP",
                }
            ]
        },
    )

    client_trade_id: Identifier
    account: Identifier
    side: Literal["BUY", "SELL"]
    isin: Isin
    quantity: PositiveAmount
    price: PositiveAmount
    currency: Currency
    trade_date: date
    trade_time: datetime
    venue: Annotated[str, Field(pattern=r"^[A-Z0-9]{4}$")]
    counterparty_lei: Lei
    settlement_type: Literal["DVP", "FOP"]

    @field_validator("trade_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("trade_time must carry a UTC offset (e.g. 'Z')")
        return value


class TimelineEntry(BaseModel):
    event_id: str
    type: str
    source: str
    time: datetime
    data: dict[str, object]


class TradeOut(BaseModel):
    trade_id: str
    client_trade_id: str
    account: str
    side: str
    isin: str
    quantity: Decimal
    price: Decimal
    currency: str
    trade_date: date
    trade_time: datetime
    venue: str
    counterparty_lei: str
    settlement_type: str
    state: str
    received_at: datetime
    timeline: list[TimelineEntry] = []


class TradeList(BaseModel):
    items: list[TradeOut]
