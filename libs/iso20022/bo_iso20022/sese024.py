"""sese.024.001.12, SecuritiesSettlementTransactionStatusAdviceV12: the depository's status
of one instruction, rendered from and parsed into a StatusAdvice.

Paths under Document/SctiesSttlmTxStsAdvc: TxId/AcctOwnrTxId quotes the instruction id;
matched is MtchgSts/Mtchd; pending is SttlmSts/Pdg and failed SttlmSts/Flng, each with
Rsn/Cd/Cd (and Rsn/AddtlRsnInf) or, with no reason, NoSpcfdRsn NORE.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from bo_iso20022 import xmltree
from bo_iso20022.messages import StatusAdvice, StatusKind
from bo_iso20022.schemas import SESE_024, InvalidMessage, load

_ROOT = "SctiesSttlmTxStsAdvc"
_NO_REASON = "NORE"
# Failing is read before pending: a failing instruction is pending too, and past its date.
_SETTLEMENT_STATUSES: tuple[tuple[StatusKind, str], ...] = (("failed", "Flng"), ("pending", "Pdg"))
_SETTLEMENT_STATUS_OF = dict(_SETTLEMENT_STATUSES)


def render_sese024(status: StatusAdvice) -> bytes:
    """The sese.024.001.12 XML of status (UTF-8), valid against its XSD."""
    root = xmltree.document(SESE_024)
    body = xmltree.add(root, _ROOT)
    xmltree.add_path(body, "TxId/AcctOwnrTxId", status.instruction_id)
    if status.status == "matched":
        # Mtchd may be empty: its reason is optional.
        xmltree.add(xmltree.add(body, "MtchgSts"), "Mtchd")
        return xmltree.to_bytes(root, SESE_024)
    settlement_status = xmltree.add(
        xmltree.add(body, "SttlmSts"), _SETTLEMENT_STATUS_OF[status.status]
    )
    if status.reason_code is None:
        xmltree.add(settlement_status, "NoSpcfdRsn", _NO_REASON)
    else:
        reason = xmltree.add(settlement_status, "Rsn")
        xmltree.add_path(reason, "Cd/Cd", status.reason_code)
        if status.reason_text is not None:
            xmltree.add(reason, "AddtlRsnInf", status.reason_text)
    return xmltree.to_bytes(root, SESE_024)


def parse_sese024(message: bytes) -> StatusAdvice:
    """The StatusAdvice in a sese.024.001.12 message: the settlement status if there is one
    (failing before pending), else matched if the matching status says so. Of several
    reasons, the first is taken. Raises InvalidMessage if the message is not schema-valid or
    says none of these (e.g. only a processing status, or a proprietary reason)."""
    _, root = load(message, expected=SESE_024)
    return status_advice_of(root)


def status_advice_of(root: Element) -> StatusAdvice:
    """The StatusAdvice of a schema-valid sese.024.001.12 Document."""
    read = xmltree.Reader(SESE_024, root)
    instruction_id = read.text(f"{_ROOT}/TxId/AcctOwnrTxId")
    for status, tag in _SETTLEMENT_STATUSES:
        path = f"{_ROOT}/SttlmSts/{tag}"
        if not read.has(path):
            continue
        if read.has(f"{path}/NoSpcfdRsn"):
            reason_code = reason_text = None
        elif read.has(f"{path}/Rsn/Cd/Cd"):
            reason_code = read.text(f"{path}/Rsn/Cd/Cd")
            reason_text = read.optional_text(f"{path}/Rsn/AddtlRsnInf")
        else:
            raise read.error("only a reason code (Cd) is supported", f"{path}/Rsn/Cd")
        return _status_advice(
            read,
            instruction_id=instruction_id,
            status=status,
            reason_code=reason_code,
            reason_text=reason_text,
        )
    if read.has(f"{_ROOT}/SttlmSts"):
        raise read.error("only a pending or failing status is supported", f"{_ROOT}/SttlmSts")
    if read.has(f"{_ROOT}/MtchgSts/Mtchd"):
        return _status_advice(read, instruction_id=instruction_id, status="matched")
    raise read.error("neither a settlement status nor a matched status", _ROOT)


def _status_advice(
    read: xmltree.Reader,
    *,
    instruction_id: str,
    status: StatusKind,
    reason_code: str | None = None,
    reason_text: str | None = None,
) -> StatusAdvice:
    try:
        return StatusAdvice(
            instruction_id=instruction_id,
            status=status,
            reason_code=reason_code,
            reason_text=reason_text,
        )
    except InvalidMessage:
        raise
    except ValueError as error:
        raise read.error(str(error), _ROOT) from None
