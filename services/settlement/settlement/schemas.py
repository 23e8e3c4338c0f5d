"""HTTP models of settlement."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from stdnum import bic as stdnum_bic
from stdnum import lei as stdnum_lei
from stdnum.exceptions import ValidationError as StdnumError

from settlement.markets import is_known_depository


def _lei(value: str) -> str:
    try:
        return str(stdnum_lei.validate(value))
    except StdnumError as error:
        raise ValueError(f"not a valid LEI ({error})") from None


def _bic(value: str) -> str:
    try:
        return str(stdnum_bic.validate(value))
    except StdnumError as error:
        raise ValueError(f"not a valid BIC ({error})") from None


def _depository(value: str) -> str:
    if not is_known_depository(value):
        raise ValueError(
            "not a depository of a known market (a name, alias or BIC in settlement.markets)"
        )
    return value.strip()


Depository = Annotated[str, Field(min_length=2, max_length=64), AfterValidator(_depository)]
CustodianBic = Annotated[str, AfterValidator(_bic)]
# sese.023 limits: SafekeepingAccount Max35Text, CashAccount (Other Id) Max34Text.
SafekeepingAccount = Annotated[str, Field(min_length=1, max_length=35)]
CashAccount = Annotated[str, Field(min_length=1, max_length=34)]


class SsiIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    counterparty_lei: Annotated[str, AfterValidator(_lei)]
    market: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    # "bond" SSIs serve trades whose ISIN is a bond (settlement.domain.ssi_asset_class).
    asset_class: Literal["equity", "bond"] = "equity"
    depository: Depository
    custodian_bic: CustodianBic
    safekeeping_account: SafekeepingAccount
    cash_account: CashAccount
    effective_from: date


class SsiUpdateIn(BaseModel):
    """A new version of an SSI: the fields given, the others as in the latest version."""

    model_config = ConfigDict(extra="forbid")

    depository: Depository | None = None
    custodian_bic: CustodianBic | None = None
    safekeeping_account: SafekeepingAccount | None = None
    cash_account: CashAccount | None = None
    effective_from: date


class SsiOut(BaseModel):
    counterparty_lei: str
    market: str
    asset_class: str
    depository: str
    custodian_bic: str
    safekeeping_account: str
    cash_account: str
    effective_from: date
    ssi_id: int
    version: int


class ObligationOut(BaseModel):
    obligation_id: str
    trade_id: str
    account: str
    side: str
    isin: str
    quantity: Decimal
    amount: Decimal
    currency: str
    trade_date: date
    settlement_date: date
    cycle_days: int
    market: str
    counterparty_lei: str
    state: str
    instruction_id: str | None
    version: int
    cancel_reason: str | None = None


class ExceptionOut(ObligationOut):
    """An obligation operations must look at: it needs an SSI, or a change to its trade
    (amend, cancel) arrived after it was instructed and was refused."""

    kind: Literal["needs_ssi", "change_refused"]
    raised_at: datetime
    # For change_refused: the refusal (resolve it with POST /v1/exceptions/{id}/resolve).
    exception_id: str | None = None
    change: Literal["amend", "cancel"] | None = None
    change_version: int | None = None
    reason: str | None = None
    requested_reason: str | None = None


class ExceptionResolutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Annotated[str, Field(min_length=1, max_length=2000)]


class RefusedChangeOut(BaseModel):
    refusal_id: str
    trade_id: str
    instruction_id: str
    change: str
    version: int
    reason: str
    requested_reason: str
    refused_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


class InstructionOut(BaseModel):
    instruction_id: str
    trade_ids: list[str]
    direction: str
    payment: str
    isin: str
    quantity: Decimal
    amount: Decimal
    currency: str
    settlement_date: date
    depository: str
    counterparty_lei: str
    state: str
    status_reason: str | None
    # The netting run that made it (None: instructed gross at once, netting disabled).
    run_id: str | None = None
    # securities or payment_only (a payment free of delivery, quantity 0), each sent as a
    # sese.023, or netted_out (nothing sent, settled by netting).
    kind: str = "securities"
    gross: bool = True
    # Against payment: DBIT the firm pays amount, CRDT it is paid (either with either
    # direction); None free of payment.
    credit_debit: str | None = None


class NettingRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settlement_date: date
    cutoff_note: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class NettingRunOut(BaseModel):
    run_id: str
    settlement_date: date
    trigger: str
    cutoff_note: str | None
    created_by: str
    created_at: datetime
    obligation_count: int
    instruction_count: int
    instructions: list[InstructionOut]


class CounterpartyNettingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class CounterpartyNettingOut(BaseModel):
    counterparty_lei: str
    enabled: bool
    updated_by: str
    updated_at: datetime


class FailOut(BaseModel):
    """An instruction that failed, or is still pending after its intended settlement date."""

    instruction_id: str
    state: str
    trade_ids: list[str]
    counterparty_lei: str
    isin: str
    direction: str
    payment: str
    quantity: Decimal
    amount: Decimal
    # Settled so far (a partial settlement) and what is still open; the penalty is on the
    # open quantity.
    settled_quantity: Decimal
    remaining_quantity: Decimal
    currency: str
    market: str
    intended_settlement_date: date
    as_of: date
    # Business days of the market's calendar from the intended settlement date on that are
    # over by as_of (0 on the intended settlement date itself).
    age_business_days: int
    # The depository's status reason as received, and its sese.024 code (LACK, MONY, ...).
    status_reason: str | None
    reason_code: str | None
    csdr: bool
    asset_class: str
    penalty_basis: Literal["securities", "cash"]
    reference_value: Decimal
    # The CSDR cash penalty accrued so far, in `currency`; None outside CSDR or without a rate.
    penalty: Decimal | None
    penalty_note: str | None
    liable: Literal["us", "counterparty"] | None


class PenaltySummaryOut(BaseModel):
    counterparty_lei: str
    currency: str
    fail_count: int
    penalty: Decimal
    # Of which the firm's own fails, and the counterparty's (the rest: reason does not say).
    penalty_us_liable: Decimal
    penalty_counterparty_liable: Decimal
