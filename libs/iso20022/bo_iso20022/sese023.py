"""sese.023.001.11, SecuritiesSettlementTransactionInstructionV11: one settlement
instruction, rendered from and parsed into a SettlementInstruction.

Where things go (paths under Document/SctiesSttlmTxInstr):
- TxId: the instruction id. SttlmTpAndAddtlParams: SctiesMvmntTp (RECE/DELI), Pmt (APMT/FREE).
- TradDtls/TradId, once per covered trade. It is the trade reference element of the
  message, it repeats, and it is Max52Text, so a trade id of 36 characters (a UUID) fits;
  the linkage references (Lnkgs/Ref/...) are Max35Text and name other settlement
  transactions or pools, not trades.
- TradDtls/TradDt/Dt/Dt and TradDtls/SttlmDt/Dt/Dt: trade and intended settlement dates.
- FinInstrmId/ISIN. QtyAndAcctDtls: SttlmQty/Qty/Unit, SfkpgAcct/Id, CshAcct/Prtry.
- SttlmParams/SctiesTxTp/Cd: TRAD (settlement of a trade), which the schema requires.
- The counterparty's side of the chain (DlvrgSttlmPties when we receive, RcvgSttlmPties
  when we deliver): Dpstry/Id/AnyBIC is the place of settlement, Pty1 the counterparty
  (Id/AnyBIC if its BIC is known, else Id/PrtryId naming its LEI, which Id requires; LEI).
- SttlmAmt (APMT only): Amt with Ccy, and CdtDbtInd: conventionally DBIT when we receive
  (we pay), CRDT when we deliver; the other way round for a receive/deliver with payment
  (RWP/DWP, SettlementInstruction.credit_debit). Either is accepted when parsing.
- A payment free of delivery (PFOD) is an APMT with SttlmQty/Qty/Unit 0 and a non-zero
  amount (as T2S sends it); SctiesMvmntTp is RECE when we pay and DELI when we are paid.
  Quantity 0 is refused otherwise (FREE, or APMT with no cash).
"""

from __future__ import annotations

from typing import TypeVar
from xml.etree.ElementTree import Element

from bo_iso20022 import values, xmltree
from bo_iso20022.messages import (
    CREDIT_DEBITS,
    MOVEMENTS,
    PAYMENTS,
    CreditDebit,
    Movement,
    Payment,
    SettlementInstruction,
)
from bo_iso20022.schemas import SESE_023, InvalidMessage, load

_ROOT = "SctiesSttlmTxInstr"
TRANSACTION_TYPE = "TRAD"


def counterparty_parties_of(movement: Movement) -> str:
    return "DlvrgSttlmPties" if movement == "RECE" else "RcvgSttlmPties"


def render_sese023(instruction: SettlementInstruction) -> bytes:
    """The sese.023.001.11 XML of instruction (UTF-8), valid against its XSD."""
    root = xmltree.document(SESE_023)
    body = xmltree.add(root, _ROOT)
    xmltree.add(body, "TxId", instruction.instruction_id)
    parameters = xmltree.add(body, "SttlmTpAndAddtlParams")
    xmltree.add(parameters, "SctiesMvmntTp", instruction.movement)
    xmltree.add(parameters, "Pmt", instruction.payment)

    trade = xmltree.add(body, "TradDtls")
    for trade_id in instruction.trade_ids:
        xmltree.add(trade, "TradId", trade_id)
    xmltree.add_path(trade, "TradDt/Dt/Dt", instruction.trade_date.isoformat())
    xmltree.add_path(trade, "SttlmDt/Dt/Dt", instruction.settlement_date.isoformat())

    xmltree.add_path(body, "FinInstrmId/ISIN", instruction.isin)

    quantity_and_account = xmltree.add(body, "QtyAndAcctDtls")
    xmltree.add_path(quantity_and_account, "SttlmQty/Qty/Unit", _quantity(instruction))
    xmltree.add_path(quantity_and_account, "SfkpgAcct/Id", instruction.safekeeping_account)
    if instruction.cash_account is not None:
        xmltree.add_path(quantity_and_account, "CshAcct/Prtry", instruction.cash_account)

    xmltree.add_path(body, "SttlmParams/SctiesTxTp/Cd", TRANSACTION_TYPE)

    parties = xmltree.add(body, counterparty_parties_of(instruction.movement))
    xmltree.add_path(parties, "Dpstry/Id/AnyBIC", instruction.depository_bic)
    _add_counterparty(xmltree.add(parties, "Pty1"), instruction)

    if instruction.payment == "APMT":
        _add_amount(body, instruction)
    return xmltree.to_bytes(root, SESE_023)


def _quantity(instruction: SettlementInstruction) -> str:
    return values.format_decimal(
        instruction.quantity,
        field="quantity",
        total_digits=values.QUANTITY_TOTAL_DIGITS,
        fraction_digits=values.QUANTITY_FRACTION_DIGITS,
        # Zero only for a payment free of delivery, which SettlementInstruction checked.
        positive=instruction.quantity != 0,
    )


def _add_counterparty(party: Element, instruction: SettlementInstruction) -> None:
    identification = xmltree.add(party, "Id")
    if instruction.counterparty_bic is not None:
        xmltree.add(identification, "AnyBIC", instruction.counterparty_bic)
    else:
        # Id is mandatory and has no LEI choice: a proprietary id that names the LEI.
        proprietary = xmltree.add(identification, "PrtryId")
        xmltree.add(proprietary, "Id", instruction.counterparty_lei)
        xmltree.add(proprietary, "Issr", "GLEIF")
        xmltree.add(proprietary, "SchmeNm", "LEI")
    if instruction.counterparty_lei is not None:
        xmltree.add(party, "LEI", instruction.counterparty_lei)


def _add_amount(body: Element, instruction: SettlementInstruction) -> None:
    if instruction.settlement_amount is None or instruction.currency is None:
        raise ValueError("an APMT instruction needs settlement_amount and currency")
    amount = values.format_decimal(
        instruction.settlement_amount,
        field="settlement_amount",
        total_digits=values.AMOUNT_TOTAL_DIGITS,
        fraction_digits=values.AMOUNT_FRACTION_DIGITS,
        positive=False,
    )
    settlement_amount = xmltree.add(body, "SttlmAmt")
    xmltree.add(settlement_amount, "Amt", amount, Ccy=instruction.currency)
    xmltree.add(settlement_amount, "CdtDbtInd", instruction.indicator)


def parse_sese023(message: bytes) -> SettlementInstruction:
    """The SettlementInstruction in a sese.023.001.11 message. Raises InvalidMessage if it
    is not schema-valid or holds what a SettlementInstruction cannot (no ISIN, a FAMT
    quantity, no place of settlement, a bad check digit...)."""
    _, root = load(message, expected=SESE_023)
    return instruction_of(root)


def instruction_of(root: Element) -> SettlementInstruction:
    """The SettlementInstruction of a schema-valid sese.023.001.11 Document."""
    read = xmltree.Reader(SESE_023, root)
    movement = read_movement(read, f"{_ROOT}/SttlmTpAndAddtlParams/SctiesMvmntTp")
    payment = read_payment(read, f"{_ROOT}/SttlmTpAndAddtlParams/Pmt")
    parties = f"{_ROOT}/{counterparty_parties_of(movement)}"
    if not read.has(f"{parties}/Dpstry/Id/AnyBIC"):
        raise read.error("missing: the place of settlement as a BIC", f"{parties}/Dpstry")
    quantity_path = f"{_ROOT}/QtyAndAcctDtls/SttlmQty/Qty/Unit"
    if not read.has(quantity_path):
        raise read.error(
            "only a quantity in units (Qty/Unit) is supported", f"{_ROOT}/QtyAndAcctDtls/SttlmQty"
        )

    settlement_amount = currency = credit_debit = None
    if payment == "APMT":
        amount_path = f"{_ROOT}/SttlmAmt/Amt"
        settlement_amount = read.decimal(amount_path)
        currency = read.attribute(amount_path, "Ccy")
        credit_debit = read_credit_debit(read, f"{_ROOT}/SttlmAmt/CdtDbtInd")

    try:
        return SettlementInstruction(
            instruction_id=read.text(f"{_ROOT}/TxId"),
            movement=movement,
            payment=payment,
            trade_date=read.date(f"{_ROOT}/TradDtls/TradDt/Dt"),
            settlement_date=read.date(f"{_ROOT}/TradDtls/SttlmDt/Dt"),
            isin=read.checked(f"{_ROOT}/FinInstrmId/ISIN", values.check_isin),
            quantity=read.decimal(quantity_path),
            settlement_amount=settlement_amount,
            currency=currency,
            depository_bic=read.checked(f"{parties}/Dpstry/Id/AnyBIC", _bic),
            counterparty_lei=read.optional_checked(f"{parties}/Pty1/LEI", _lei),
            counterparty_bic=read.optional_checked(f"{parties}/Pty1/Id/AnyBIC", _bic),
            safekeeping_account=read.text(f"{_ROOT}/QtyAndAcctDtls/SfkpgAcct/Id"),
            cash_account=_cash_account(read, f"{_ROOT}/QtyAndAcctDtls/CshAcct"),
            trade_ids=read.texts(f"{_ROOT}/TradDtls/TradId"),
            credit_debit=credit_debit,
        )
    except InvalidMessage:
        raise
    except ValueError as error:  # a rule of SettlementInstruction, e.g. a bad check digit
        raise read.error(str(error), _ROOT) from None


_Code = TypeVar("_Code", bound=str)


def _read_code(read: xmltree.Reader, path: str, codes: tuple[_Code, ...], what: str) -> _Code:
    text = read.text(path)
    for code in codes:
        if text == code:
            return code
    raise read.error(f"unknown {what} {text!r}", path)


def read_movement(read: xmltree.Reader, path: str) -> Movement:
    return _read_code(read, path, MOVEMENTS, "movement")


def read_credit_debit(read: xmltree.Reader, path: str) -> CreditDebit:
    """Either indicator: the conventional one of the movement, or a with-payment one."""
    return _read_code(read, path, CREDIT_DEBITS, "credit/debit indicator")


def read_payment(read: xmltree.Reader, path: str) -> Payment:
    return _read_code(read, path, PAYMENTS, "payment")


def _bic(text: str) -> str:
    return values.check_bic(text, field="BIC")


def _lei(text: str) -> str:
    return values.check_lei(text, field="LEI")


def _cash_account(read: xmltree.Reader, path: str) -> str | None:
    """CshAcct is a choice of IBAN or proprietary id; either reads as the account."""
    return read.optional_text(f"{path}/Prtry") or read.optional_text(f"{path}/IBAN")
