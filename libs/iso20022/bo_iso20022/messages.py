"""The typed contents of the three messages: what settlement instructs (sese.023), what the
depository advises (sese.024) and what it confirms (sese.025). Frozen and checked when made,
so that any value of these types renders into a schema-valid message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

from bo_iso20022 import values
from bo_iso20022.schemas import SESE_024, enumeration

# ReceiveDelivery1Code: RECE receive the securities, DELI deliver them.
Movement = Literal["RECE", "DELI"]
# DeliveryReceiptType2Code: APMT against payment (DVP/RVP), FREE of payment.
Payment = Literal["APMT", "FREE"]
# CreditDebitCode: DBIT we pay, CRDT we are paid (the direction of the cash leg).
CreditDebit = Literal["CRDT", "DBIT"]
StatusKind = Literal["matched", "pending", "failed"]
ConfirmationKind = Literal["settled", "partially_settled"]

MOVEMENTS: tuple[Movement, ...] = ("RECE", "DELI")
PAYMENTS: tuple[Payment, ...] = ("APMT", "FREE")
CREDIT_DEBITS: tuple[CreditDebit, ...] = ("CRDT", "DBIT")
STATUS_KINDS: tuple[StatusKind, ...] = ("matched", "pending", "failed")
CONFIRMATION_KINDS: tuple[ConfirmationKind, ...] = ("settled", "partially_settled")

# The two fail reasons the CSD simulator uses most (PendingReason24Code/FailingReason4Code).
LACK_OF_SECURITIES = "LACK"
LACK_OF_CASH = "MONY"


def pending_reason_codes() -> frozenset[str]:
    """The codes a pending status may give (PendingReason24Code of sese.024.001.12)."""
    return enumeration(SESE_024, "PendingReason24Code")


def failing_reason_codes() -> frozenset[str]:
    """The codes a failing status may give (FailingReason4Code of sese.024.001.12)."""
    return enumeration(SESE_024, "FailingReason4Code")


def _check_choice(value: object, choices: tuple[str, ...], *, field: str) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(choices)}, got {value!r}")


def _check_trade_ids(trade_ids: object) -> None:
    if not isinstance(trade_ids, tuple):
        raise ValueError(f"trade_ids must be a tuple, not {type(trade_ids).__name__}")
    for trade_id in trade_ids:
        values.check_text(trade_id, field="trade id", max_length=values.MAX52)
    if len(set(trade_ids)) != len(trade_ids):
        raise ValueError(f"trade_ids has a trade more than once: {trade_ids!r}")


def _check_cash(
    payment: Payment, amount: Decimal | None, currency: str | None, *, field: str
) -> None:
    """Against payment there is an amount and its currency; free of payment, neither."""
    if payment == "APMT":
        if amount is None or currency is None:
            raise ValueError(f"an APMT (against payment) message needs {field} and currency")
        values.format_decimal(
            amount,
            field=field,
            total_digits=values.AMOUNT_TOTAL_DIGITS,
            fraction_digits=values.AMOUNT_FRACTION_DIGITS,
            positive=False,
        )
        values.check_currency(currency)
    elif amount is not None or currency is not None:
        raise ValueError(f"a FREE (free of payment) message has no {field} or currency")


def conventional_credit_debit(movement: Movement) -> CreditDebit:
    """The cash direction of a plain DVP/RVP: we pay (DBIT) for what we receive, are paid
    (CRDT) for what we deliver."""
    return "DBIT" if movement == "RECE" else "CRDT"


def _normalised_credit_debit(
    movement: Movement, payment: Payment, credit_debit: object
) -> CreditDebit | None:
    """credit_debit as the message keeps it: None for the conventional direction of the
    movement (so that a message equals its render-parse round trip however it was made), the
    indicator itself for a with-payment one (DWP/RWP, PFOD). Only APMT has a cash leg."""
    if credit_debit is None:
        return None
    _check_choice(credit_debit, CREDIT_DEBITS, field="credit_debit")
    if payment != "APMT":
        raise ValueError("a FREE (free of payment) message has no credit_debit")
    if credit_debit == conventional_credit_debit(movement):
        return None
    return "CRDT" if credit_debit == "CRDT" else "DBIT"


def is_payment_free_of_delivery(payment: Payment, quantity: object, amount: object) -> bool:
    """A payment free of delivery (PFOD): against payment, quantity 0, a non-zero amount."""
    return (
        payment == "APMT"
        and isinstance(quantity, Decimal)
        and quantity == 0
        and isinstance(amount, Decimal)
        and amount.is_finite()
        and amount > 0
    )


def _check_quantity(quantity: object, *, field: str, zero_allowed: bool = False) -> None:
    values.format_decimal(
        quantity,
        field=field,
        total_digits=values.QUANTITY_TOTAL_DIGITS,
        fraction_digits=values.QUANTITY_FRACTION_DIGITS,
        positive=not zero_allowed,
    )


@dataclass(frozen=True, kw_only=True)
class SettlementInstruction:
    """One settlement instruction to the depository (sese.023), from our side: we receive
    (RECE) or deliver (DELI) quantity units of isin, against settlement_amount (APMT) or free
    of payment (FREE), with counterparty, at the depository, on settlement_date.

    The cash leg goes the conventional way (credit_debit None: we pay for what we receive,
    are paid for what we deliver) unless credit_debit says otherwise: CRDT on a RECE is a
    receive with payment (RWP), DBIT on a DELI a deliver with payment (DWP). An explicit
    conventional indicator is kept as None. Quantity 0 is a payment free of delivery (PFOD):
    only against payment with a non-zero amount; by our convention its movement is RECE when
    we pay (DBIT) and DELI when we are paid (CRDT), i.e. credit_debit stays None."""

    # TxId: our reference, which every status and confirmation quotes back. Max35Text, so a
    # UUID must be rendered without its hyphens (32 characters), not as str(uuid) (36).
    instruction_id: str
    movement: Movement
    payment: Payment
    trade_date: date
    # The intended settlement date.
    settlement_date: date
    isin: str
    # Units of the security (the Unit choice of the quantity, not FAMT face amount).
    quantity: Decimal
    # Present if and only if payment is APMT.
    settlement_amount: Decimal | None
    currency: str | None
    # The place of settlement (the CSD), as its BIC.
    depository_bic: str
    # At least one of the two.
    counterparty_lei: str | None
    counterparty_bic: str | None
    # Our securities account at the depository and the cash account for the payment leg.
    safekeeping_account: str
    cash_account: str | None
    # The trades this instruction covers (one when gross, several when netted).
    trade_ids: tuple[str, ...]
    # SttlmAmt/CdtDbtInd when it is not the movement's conventional one (APMT only).
    credit_debit: CreditDebit | None = None

    def __post_init__(self) -> None:
        values.check_text(self.instruction_id, field="instruction_id", max_length=values.MAX35)
        _check_choice(self.movement, MOVEMENTS, field="movement")
        _check_choice(self.payment, PAYMENTS, field="payment")
        values.check_date(self.trade_date, field="trade_date")
        values.check_date(self.settlement_date, field="settlement_date")
        if self.settlement_date < self.trade_date:
            raise ValueError(
                f"settlement_date {self.settlement_date} is before trade_date {self.trade_date}"
            )
        values.check_isin(self.isin)
        _check_quantity(
            self.quantity,
            field="quantity",
            zero_allowed=is_payment_free_of_delivery(
                self.payment, self.quantity, self.settlement_amount
            ),
        )
        _check_cash(self.payment, self.settlement_amount, self.currency, field="settlement_amount")
        object.__setattr__(
            self,
            "credit_debit",
            _normalised_credit_debit(self.movement, self.payment, self.credit_debit),
        )
        values.check_bic(self.depository_bic, field="depository_bic")
        if self.counterparty_lei is None and self.counterparty_bic is None:
            raise ValueError("the counterparty needs an LEI, a BIC or both")
        if self.counterparty_lei is not None:
            values.check_lei(self.counterparty_lei, field="counterparty_lei")
        if self.counterparty_bic is not None:
            values.check_bic(self.counterparty_bic, field="counterparty_bic")
        values.check_text(
            self.safekeeping_account, field="safekeeping_account", max_length=values.MAX35
        )
        if self.cash_account is not None:
            values.check_text(self.cash_account, field="cash_account", max_length=values.MAX34)
        _check_trade_ids(self.trade_ids)

    @property
    def indicator(self) -> CreditDebit:
        """The CdtDbtInd of the cash leg: credit_debit, or the movement's conventional one."""
        return self.credit_debit or conventional_credit_debit(self.movement)


@dataclass(frozen=True, kw_only=True)
class StatusAdvice:
    """The depository's status of one instruction (sese.024): matched with the
    counterparty's instruction; pending (not settled yet, with a reason if given); or failed
    (the settlement date has passed unsettled, e.g. LACK securities or MONY cash)."""

    # The instruction's TxId, quoted back.
    instruction_id: str
    status: StatusKind
    # A PendingReason24Code for pending, a FailingReason4Code for failed, None for matched
    # (and for a pending or failed status with no reason given: NORE).
    reason_code: str | None = None
    # Free text the depository adds to the reason (AddtlRsnInf, Max210Text).
    reason_text: str | None = None

    def __post_init__(self) -> None:
        values.check_text(self.instruction_id, field="instruction_id", max_length=values.MAX35)
        _check_choice(self.status, STATUS_KINDS, field="status")
        if self.status == "matched":
            if self.reason_code is not None or self.reason_text is not None:
                raise ValueError("a matched status has no reason")
            return
        if self.reason_code is None:
            if self.reason_text is not None:
                raise ValueError("reason_text needs a reason_code")
            return
        codes = pending_reason_codes() if self.status == "pending" else failing_reason_codes()
        if self.reason_code not in codes:
            raise ValueError(
                f"reason_code {self.reason_code!r} is not a {self.status} reason of "
                f"{SESE_024} (e.g. {LACK_OF_SECURITIES} or {LACK_OF_CASH})"
            )
        if self.reason_text is not None:
            values.check_text(self.reason_text, field="reason_text", max_length=values.MAX210)


@dataclass(frozen=True, kw_only=True)
class SettlementConfirmation:
    """The depository's confirmation that an instruction settled (sese.025), wholly or in
    part. settled_quantity and settled_amount are what this confirmation settled.
    credit_debit and a settled_quantity of 0 (PFOD) as in SettlementInstruction."""

    # The instruction's TxId, quoted back.
    instruction_id: str
    status: ConfirmationKind
    movement: Movement
    payment: Payment
    isin: str
    settled_quantity: Decimal
    # For a partial settlement, what is still to settle, if the depository says.
    remaining_quantity: Decimal | None = None
    # Present if and only if payment is APMT.
    settled_amount: Decimal | None
    currency: str | None
    # The effective settlement date.
    settlement_date: date
    trade_ids: tuple[str, ...] = ()
    # SttldAmt/CdtDbtInd when it is not the movement's conventional one (APMT only).
    credit_debit: CreditDebit | None = None

    def __post_init__(self) -> None:
        values.check_text(self.instruction_id, field="instruction_id", max_length=values.MAX35)
        _check_choice(self.status, CONFIRMATION_KINDS, field="status")
        _check_choice(self.movement, MOVEMENTS, field="movement")
        _check_choice(self.payment, PAYMENTS, field="payment")
        values.check_isin(self.isin)
        _check_quantity(
            self.settled_quantity,
            field="settled_quantity",
            zero_allowed=is_payment_free_of_delivery(
                self.payment, self.settled_quantity, self.settled_amount
            ),
        )
        if self.remaining_quantity is not None:
            if self.status != "partially_settled":
                raise ValueError("only a partial settlement has a remaining_quantity")
            _check_quantity(self.remaining_quantity, field="remaining_quantity")
        _check_cash(self.payment, self.settled_amount, self.currency, field="settled_amount")
        object.__setattr__(
            self,
            "credit_debit",
            _normalised_credit_debit(self.movement, self.payment, self.credit_debit),
        )
        values.check_date(self.settlement_date, field="settlement_date")
        _check_trade_ids(self.trade_ids)

    @property
    def indicator(self) -> CreditDebit:
        """The CdtDbtInd of the cash leg: credit_debit, or the movement's conventional one."""
        return self.credit_debit or conventional_credit_debit(self.movement)
