"""HTTP request and response models of the ledger."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LineOut(BaseModel):
    ledger_account: str
    unit: str
    debit: Decimal
    credit: Decimal


class EntryOut(BaseModel):
    entry_id: str
    trade_id: str
    account: str
    kind: str
    # The trade version the entry books (a reversal: the version of the entry it reverses).
    version: int
    # For a reversal, the entry it reverses (voids).
    reverses: str | None
    # When it was recorded, and when it takes effect (what as-of balances use).
    posted_at: datetime
    effective_at: datetime
    # The event that caused it.
    event_id: str
    event_type: str | None
    lines: list[LineOut]


class AccountBalanceOut(BaseModel):
    ledger_account: str
    unit: str
    balance: Decimal


class AssetBalanceOut(BaseModel):
    unit: str
    asset_class: str
    settled: Decimal
    pending: Decimal
    # settled + pending: the trade-date position.
    position: Decimal


class BalancesOut(BaseModel):
    account: str
    # The effective time the balances are at (now when not asked).
    as_of: datetime
    assets: list[AssetBalanceOut]
    accounts: list[AccountBalanceOut]


class StatementLineOut(BaseModel):
    effective_at: datetime
    posted_at: datetime
    entry_id: str
    trade_id: str
    kind: str
    ledger_account: str
    unit: str
    debit: Decimal
    credit: Decimal
    # The balance of this ledger account and unit after the line.
    balance: Decimal


class StatementOut(BaseModel):
    account: str
    period_from: datetime = Field(serialization_alias="from")
    period_to: datetime = Field(serialization_alias="to")
    opening: list[AccountBalanceOut]
    lines: list[StatementLineOut]
    closing: list[AccountBalanceOut]


class TrialBalanceRowOut(BaseModel):
    ledger_account: str
    unit: str
    balance: Decimal


class TrialBalanceOut(BaseModel):
    balanced: bool
    totals_by_unit: dict[str, Decimal]
    # The units whose accounts do not sum to zero (none when balanced).
    non_zero_units: list[str]
    rows: list[TrialBalanceRowOut] | None = None


class LimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_position: Decimal = Field(
        description="the lowest trade-date position (settled + pending) allowed",
        examples=["0"],
    )


class LimitOut(BaseModel):
    account: str
    unit: str
    min_position: Decimal
    set_by: str
    set_at: datetime


class ExceptionOut(BaseModel):
    exception_id: str
    trade_id: str
    account: str
    version: int
    event_id: str
    event_type: str
    reason: str
    breaches: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    raised_at: datetime


class ChartAccountOut(BaseModel):
    ledger_account: str
    unit: str
    account_type: str
    normal_side: str
    owner: str
    asset_class: str
    phase: str
    created_at: datetime
