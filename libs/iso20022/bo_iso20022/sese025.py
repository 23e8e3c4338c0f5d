"""sese.025.001.11, SecuritiesSettlementTransactionConfirmationV11: the depository's
confirmation that an instruction settled, wholly or in part, rendered from and parsed into
a SettlementConfirmation.

Paths under Document/SctiesSttlmTxConf: TxIdDtls quotes the instruction id (AcctOwnrTxId)
with its SctiesMvmntTp and Pmt; AddtlParams/PrtlSttlm is PAIN for a partial settlement
(absent when it settled in full); TradDtls has the covered TradId and the effective date
FctvSttlmDt/Dt/Dt; FinInstrmId/ISIN; QtyAndAcctDtls/SttldQty/Qty/Unit and, for a partial
settlement, RmngToBeSttldQty/Unit; SttlmParams/SctiesTxTp/Cd TRAD; SttldAmt (APMT only)
with CdtDbtInd, conventional or with payment (see sese023). A payment free of delivery
settles quantity 0 (SttldQty/Qty/Unit 0) against its amount.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from bo_iso20022 import values, xmltree
from bo_iso20022.messages import ConfirmationKind, SettlementConfirmation
from bo_iso20022.schemas import SESE_025, InvalidMessage, load
from bo_iso20022.sese023 import (
    TRANSACTION_TYPE,
    read_credit_debit,
    read_movement,
    read_payment,
)

_ROOT = "SctiesSttlmTxConf"
# PartialSettlement2Code: PAIN a part settled and more is to come (PARC, the part that
# completes the instruction, reads as settled).
_PARTIAL = "PAIN"


def _quantity(quantity: object, field: str, *, zero_allowed: bool = False) -> str:
    return values.format_decimal(
        quantity,
        field=field,
        total_digits=values.QUANTITY_TOTAL_DIGITS,
        fraction_digits=values.QUANTITY_FRACTION_DIGITS,
        positive=not zero_allowed,
    )


def render_sese025(confirmation: SettlementConfirmation) -> bytes:
    """The sese.025.001.11 XML of confirmation (UTF-8), valid against its XSD."""
    root = xmltree.document(SESE_025)
    body = xmltree.add(root, _ROOT)
    identification = xmltree.add(body, "TxIdDtls")
    xmltree.add(identification, "AcctOwnrTxId", confirmation.instruction_id)
    xmltree.add(identification, "SctiesMvmntTp", confirmation.movement)
    xmltree.add(identification, "Pmt", confirmation.payment)
    if confirmation.status == "partially_settled":
        xmltree.add_path(body, "AddtlParams/PrtlSttlm", _PARTIAL)

    trade = xmltree.add(body, "TradDtls")
    for trade_id in confirmation.trade_ids:
        xmltree.add(trade, "TradId", trade_id)
    xmltree.add_path(trade, "FctvSttlmDt/Dt/Dt", confirmation.settlement_date.isoformat())

    xmltree.add_path(body, "FinInstrmId/ISIN", confirmation.isin)

    quantity_and_account = xmltree.add(body, "QtyAndAcctDtls")
    xmltree.add_path(
        quantity_and_account,
        "SttldQty/Qty/Unit",
        # Zero only for a payment free of delivery, which SettlementConfirmation checked.
        _quantity(
            confirmation.settled_quantity,
            "settled_quantity",
            zero_allowed=confirmation.settled_quantity == 0,
        ),
    )
    if confirmation.remaining_quantity is not None:
        xmltree.add_path(
            quantity_and_account,
            "RmngToBeSttldQty/Unit",
            _quantity(confirmation.remaining_quantity, "remaining_quantity"),
        )

    xmltree.add_path(body, "SttlmParams/SctiesTxTp/Cd", TRANSACTION_TYPE)

    if confirmation.payment == "APMT":
        if confirmation.settled_amount is None or confirmation.currency is None:
            raise ValueError("an APMT confirmation needs settled_amount and currency")
        amount = values.format_decimal(
            confirmation.settled_amount,
            field="settled_amount",
            total_digits=values.AMOUNT_TOTAL_DIGITS,
            fraction_digits=values.AMOUNT_FRACTION_DIGITS,
            positive=False,
        )
        settled_amount = xmltree.add(body, "SttldAmt")
        xmltree.add(settled_amount, "Amt", amount, Ccy=confirmation.currency)
        xmltree.add(settled_amount, "CdtDbtInd", confirmation.indicator)
    return xmltree.to_bytes(root, SESE_025)


def parse_sese025(message: bytes) -> SettlementConfirmation:
    """The SettlementConfirmation in a sese.025.001.11 message. PrtlSttlm PAIN reads as
    partially_settled; absent, or PARC (the part that completes it), as settled, with
    settled_quantity what this message settled. Raises InvalidMessage if the message is not
    schema-valid or holds what a SettlementConfirmation cannot."""
    _, root = load(message, expected=SESE_025)
    return confirmation_of(root)


def confirmation_of(root: Element) -> SettlementConfirmation:
    """The SettlementConfirmation of a schema-valid sese.025.001.11 Document."""
    read = xmltree.Reader(SESE_025, root)
    movement = read_movement(read, f"{_ROOT}/TxIdDtls/SctiesMvmntTp")
    payment = read_payment(read, f"{_ROOT}/TxIdDtls/Pmt")
    partial = read.optional_text(f"{_ROOT}/AddtlParams/PrtlSttlm")
    status: ConfirmationKind = "partially_settled" if partial == _PARTIAL else "settled"

    quantity_path = f"{_ROOT}/QtyAndAcctDtls/SttldQty/Qty/Unit"
    if not read.has(quantity_path):
        raise read.error(
            "only a quantity in units (Qty/Unit) is supported", f"{_ROOT}/QtyAndAcctDtls/SttldQty"
        )
    remaining_path = f"{_ROOT}/QtyAndAcctDtls/RmngToBeSttldQty"
    remaining_quantity = None
    if read.has(remaining_path):
        if not read.has(f"{remaining_path}/Unit"):
            raise read.error("only a quantity in units (Unit) is supported", remaining_path)
        remaining_quantity = read.decimal(f"{remaining_path}/Unit")
        # A depository may say that nothing remains; the model has no remainder then.
        if remaining_quantity == 0 or status == "settled":
            remaining_quantity = None

    settled_amount = currency = credit_debit = None
    if payment == "APMT":
        amount_path = f"{_ROOT}/SttldAmt/Amt"
        settled_amount = read.decimal(amount_path)
        currency = read.attribute(amount_path, "Ccy")
        credit_debit = read_credit_debit(read, f"{_ROOT}/SttldAmt/CdtDbtInd")

    try:
        return SettlementConfirmation(
            instruction_id=read.text(f"{_ROOT}/TxIdDtls/AcctOwnrTxId"),
            status=status,
            movement=movement,
            payment=payment,
            isin=read.checked(f"{_ROOT}/FinInstrmId/ISIN", values.check_isin),
            settled_quantity=read.decimal(quantity_path),
            remaining_quantity=remaining_quantity,
            settled_amount=settled_amount,
            currency=currency,
            settlement_date=read.date(f"{_ROOT}/TradDtls/FctvSttlmDt/Dt"),
            trade_ids=read.texts(f"{_ROOT}/TradDtls/TradId"),
            credit_debit=credit_debit,
        )
    except InvalidMessage:
        raise
    except ValueError as error:  # a rule of SettlementConfirmation, e.g. a bad check digit
        raise read.error(str(error), _ROOT) from None
