"""ISO 20022 settlement messages (sese.023 instruction, sese.024 status advice, sese.025
confirmation): typed contents, rendering and schema-validated parsing. Pure: no I/O but
reading the package's own XSDs."""

from __future__ import annotations

from bo_iso20022.messages import (
    LACK_OF_CASH,
    LACK_OF_SECURITIES,
    ConfirmationKind,
    CreditDebit,
    Movement,
    Payment,
    SettlementConfirmation,
    SettlementInstruction,
    StatusAdvice,
    StatusKind,
    conventional_credit_debit,
    failing_reason_codes,
    is_payment_free_of_delivery,
    pending_reason_codes,
)
from bo_iso20022.schemas import (
    MESSAGE_TYPES,
    SESE_023,
    SESE_024,
    SESE_025,
    InvalidMessage,
    load,
    validate,
)
from bo_iso20022.sese023 import instruction_of, parse_sese023, render_sese023
from bo_iso20022.sese024 import parse_sese024, render_sese024, status_advice_of
from bo_iso20022.sese025 import confirmation_of, parse_sese025, render_sese025

Message = SettlementInstruction | StatusAdvice | SettlementConfirmation


def message_type(message: bytes) -> str:
    """SESE_023, SESE_024 or SESE_025 for a schema-valid message; else InvalidMessage."""
    found, _ = load(message)
    return found


def parse(message: bytes) -> Message:
    """Any of the three messages, told apart by namespace (e.g. what arrives on csd.status,
    a sese.024 or a sese.025). Raises InvalidMessage."""
    found, root = load(message)
    if found == SESE_023:
        return instruction_of(root)
    if found == SESE_024:
        return status_advice_of(root)
    return confirmation_of(root)


__all__ = [
    "LACK_OF_CASH",
    "LACK_OF_SECURITIES",
    "MESSAGE_TYPES",
    "SESE_023",
    "SESE_024",
    "SESE_025",
    "ConfirmationKind",
    "CreditDebit",
    "InvalidMessage",
    "Message",
    "Movement",
    "Payment",
    "SettlementConfirmation",
    "SettlementInstruction",
    "StatusAdvice",
    "StatusKind",
    "conventional_credit_debit",
    "failing_reason_codes",
    "is_payment_free_of_delivery",
    "message_type",
    "parse",
    "parse_sese023",
    "parse_sese024",
    "parse_sese025",
    "pending_reason_codes",
    "render_sese023",
    "render_sese024",
    "render_sese025",
    "validate",
]
