"""HTTP request and response models of the gateway.

Each rule names the field it checks; `bo_common.problems` turns a failure into a 422 whose
`errors` list holds `{field, reason}` for every broken rule.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from gateway.domain import (
    valid_currency,
    valid_cusip,
    valid_isin,
    valid_lei,
    valid_mic,
)

Isin = Annotated[str, AfterValidator(valid_isin)]
Cusip = Annotated[str, AfterValidator(valid_cusip)]
Lei = Annotated[str, AfterValidator(valid_lei)]
Currency = Annotated[str, AfterValidator(valid_currency)]
Mic = Annotated[str, AfterValidator(valid_mic)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-/]+$")]
# Bounded so that every stored and derived amount is exact: quantity numeric(28,8),
# price numeric(28,10), and quantity times price within the 20 integer digits of the
# numeric(28,8) amounts downstream.
Quantity = Annotated[
    Decimal,
    Field(gt=0, max_digits=18, decimal_places=8, allow_inf_nan=False, examples=["100"]),
]
Price = Annotated[
    Decimal,
    Field(gt=0, max_digits=18, decimal_places=10, allow_inf_nan=False, examples=["189.25"]),
]
Reason = Annotated[
    str, Field(min_length=3, max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")
]


def in_utc_range(value: datetime) -> datetime:
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None
    if value.astimezone(UTC).year < 1970:
        raise ValueError("before 1970")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(in_utc_range)]
TradeDate = Annotated[date, Field(ge=date(1970, 1, 1))]

TRADE_EXAMPLE: dict[str, Any] = {
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


class TradeTerms(BaseModel):
    """The economic terms of a trade, as captured or amended."""

    model_config = ConfigDict(extra="forbid")

    side: Literal["BUY", "SELL"]
    isin: Isin
    cusip: Cusip | None = Field(
        default=None, description="Optional; must be the CUSIP inside a US or CA ISIN"
    )
    quantity: Quantity
    price: Price
    currency: Currency
    trade_date: TradeDate = Field(description="The venue's trading day; not in the future")
    trade_time: Instant = Field(
        description="With a UTC offset; its date in that offset is trade_date"
    )
    venue: Mic = Field(description="ISO 10383 MIC, active on trade_date (XOFF off-exchange)")
    counterparty_lei: Lei
    settlement_type: Literal["DVP", "FOP"]


class TradeIn(TradeTerms):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [TRADE_EXAMPLE]})

    client_trade_id: Identifier = Field(
        description="The front office's id; a retry with the same id returns the same trade"
    )
    account: Identifier = Field(description="An account of the key's desk")


class AmendIn(BaseModel):
    """The fields to change and why; every other term stays. client_trade_id and account
    cannot change (cancel the trade and capture a new one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"quantity": "150", "price": "189.10", "reason": "Allocation fixed"}]
        },
    )

    reason: Reason
    side: Literal["BUY", "SELL"] | None = None
    isin: Isin | None = None
    cusip: Cusip | None = None
    quantity: Quantity | None = None
    price: Price | None = None
    currency: Currency | None = None
    trade_date: TradeDate | None = None
    trade_time: Instant | None = None
    venue: Mic | None = None
    counterparty_lei: Lei | None = None
    settlement_type: Literal["DVP", "FOP"] | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude={"reason"}, exclude_none=True)


class CancelIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "Booked twice by the front office"}]},
    )

    reason: Reason


class BatchIn(BaseModel):
    """Up to 1,000 trades. Each is checked on its own: the valid ones are captured together
    in one transaction, the invalid ones are reported by index."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "trades": [
                        TRADE_EXAMPLE,
                        {**TRADE_EXAMPLE, "client_trade_id": "FO-2026-000124", "quantity": "5"},
                    ]
                }
            ]
        },
    )

    trades: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=1000,
        json_schema_extra={"items": {"$ref": "#/components/schemas/TradeIn"}},
    )


class FieldError(BaseModel):
    field: str
    reason: str


class TimelineEntry(BaseModel):
    event_id: str
    type: str
    source: str
    time: datetime
    data: dict[str, Any]


State = Literal[
    "captured",
    "held",
    "released",
    "instructed",
    "matched",
    "settled",
    "partially_settled",
    "failed",
    "cancelled",
    "rejected",
]


class TradeOut(BaseModel):
    trade_id: str
    client_trade_id: str
    account: str
    side: str
    isin: str
    cusip: str | None = None
    quantity: str = Field(description="A decimal, as a string", examples=["100"])
    price: str = Field(description="A decimal, as a string", examples=["189.25"])
    currency: str
    trade_date: date
    trade_time: datetime
    venue: str
    counterparty_lei: str
    settlement_type: str
    state: State
    version: int = Field(description="1 at capture, one more for each amendment")
    received_at: datetime
    timeline: list[TimelineEntry] = []


class TradeList(BaseModel):
    items: list[TradeOut]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )


class BatchItem(BaseModel):
    index: int
    client_trade_id: str | None = None
    status: Literal["created", "existing", "rejected"]
    trade_id: str | None = None
    errors: list[FieldError] = []


class BatchOut(BaseModel):
    created: int
    existing: int
    rejected: int
    items: list[BatchItem]
