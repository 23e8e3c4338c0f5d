"""What settlement must not take: a tampered or foreign message is one InvalidMessage naming
the element and the reason (what a dead letter says); what the schema cannot carry is a
ValueError before anything is rendered."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

import pytest

from bo_iso20022 import (
    InvalidMessage,
    SettlementConfirmation,
    SettlementInstruction,
    StatusAdvice,
    parse,
    parse_sese023,
    parse_sese024,
    parse_sese025,
    render_sese023,
    render_sese024,
    render_sese025,
    validate,
)

INSTRUCTION = SettlementInstruction(
    instruction_id="0f8c2d8e6b2b4f0c9d1e2a3b4c5d6e7f",
    movement="DELI",
    payment="APMT",
    trade_date=date(2026, 11, 20),
    settlement_date=date(2026, 11, 24),
    isin="FR0000120271",
    quantity=Decimal("250"),
    settlement_amount=Decimal("14312.50"),
    currency="EUR",
    depository_bic="SICVFRPPXXX",
    counterparty_lei="8I5DZWZKVSZI1NUHU748",
    counterparty_bic="BNPAFRPPXXX",
    safekeeping_account="ACC-002",
    cash_account="FR7630006000011234567890189",
    trade_ids=("3f2b8c1e-5a4d-4e8f-9b7a-1c2d3e4f5a6b",),
)
FAILED = StatusAdvice(
    instruction_id=INSTRUCTION.instruction_id,
    status="failed",
    reason_code="LACK",
    reason_text="lack of securities",
)
PARTIAL = SettlementConfirmation(
    instruction_id=INSTRUCTION.instruction_id,
    status="partially_settled",
    movement="DELI",
    payment="APMT",
    isin="FR0000120271",
    settled_quantity=Decimal("100"),
    remaining_quantity=Decimal("150"),
    settled_amount=Decimal("5725"),
    currency="EUR",
    settlement_date=date(2026, 11, 24),
    trade_ids=INSTRUCTION.trade_ids,
)
SESE023 = render_sese023(INSTRUCTION)
SESE024 = render_sese024(FAILED)
SESE025 = render_sese025(PARTIAL)


def _tampered(message: bytes, old: bytes, new: bytes) -> bytes:
    assert message.count(old) == 1, f"{old!r} is not once in the message"
    return message.replace(old, new)


def _invalid(message: bytes) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        parse(message)
    return caught.value


def test_text_that_is_not_xml_is_an_invalid_message() -> None:
    for message in (b"", b"not xml at all", SESE023[:-20], b'{"instruction_id": "I-1"}'):
        error = _invalid(message)

        assert "not well-formed XML" in str(error)


def test_a_message_in_another_namespace_is_an_invalid_message() -> None:
    older_version = _tampered(SESE023, b"sese.023.001.11", b"sese.023.001.10")

    with pytest.raises(InvalidMessage, match=r"sese\.023\.001\.10.*not a Document in a known"):
        validate(older_version)
    with pytest.raises(InvalidMessage, match="not a Document in a known namespace"):
        parse_sese023(
            _tampered(SESE023, b' xmlns="urn:iso:std:iso:20022:tech:xsd:sese.023.001.11"', b"")
        )


def test_a_message_of_another_type_is_refused_by_each_specific_parser() -> None:
    with pytest.raises(
        InvalidMessage, match=r"expected a sese\.023\.001\.11 message, got a sese\.024"
    ):
        parse_sese023(SESE024)
    with pytest.raises(
        InvalidMessage, match=r"expected a sese\.024\.001\.12 message, got a sese\.025"
    ):
        parse_sese024(SESE025)
    with pytest.raises(
        InvalidMessage, match=r"expected a sese\.025\.001\.11 message, got a sese\.023"
    ):
        parse_sese025(SESE023)


def test_a_missing_mandatory_element_is_named_with_its_path() -> None:
    no_transaction_id = _tampered(SESE023, b"<TxId>0f8c2d8e6b2b4f0c9d1e2a3b4c5d6e7f</TxId>", b"")

    error = _invalid(no_transaction_id)

    assert error.message_type == "sese.023.001.11"
    assert error.path == "/Document/SctiesSttlmTxInstr"
    assert "TxId" in error.reason
    assert str(error).startswith("sese.023.001.11: /Document/SctiesSttlmTxInstr: ")


def test_a_missing_instruction_reference_in_a_status_is_named() -> None:
    no_reference = _tampered(
        SESE024, b"<AcctOwnrTxId>0f8c2d8e6b2b4f0c9d1e2a3b4c5d6e7f</AcctOwnrTxId>", b""
    )

    error = _invalid(no_reference)

    assert error.path == "/Document/SctiesSttlmTxStsAdvc/TxId"
    assert "AcctOwnrTxId" in error.reason


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (b"5725.123456", "fraction digits"),
        (b"1234567890123456789", "digits"),
        (b"-5725", "greater or equal than"),
        (b"5,725.00", "invalid value"),
        (b"", "invalid value"),
    ],
)
def test_a_bad_amount_is_named_with_its_path(amount: bytes, reason: str) -> None:
    message = _tampered(
        SESE025, b'<Amt Ccy="EUR">5725</Amt>', b'<Amt Ccy="EUR">' + amount + b"</Amt>"
    )

    error = _invalid(message)

    assert error.path == "/Document/SctiesSttlmTxConf/SttldAmt/Amt"
    assert reason in error.reason


def test_a_bad_currency_code_is_named_with_its_path() -> None:
    error = _invalid(_tampered(SESE023, b'Ccy="EUR"', b'Ccy="eur"'))

    assert error.path == "/Document/SctiesSttlmTxInstr/SttlmAmt/Amt"
    assert "Ccy" in error.reason


def test_an_unknown_reason_code_is_an_invalid_message() -> None:
    error = _invalid(_tampered(SESE024, b"<Cd>LACK</Cd>", b"<Cd>NOPE</Cd>"))

    assert error.path == "/Document/SctiesSttlmTxStsAdvc/SttlmSts/Flng/Rsn/Cd/Cd"
    assert "LACK" in error.reason  # the reason lists the codes the schema allows


def test_a_schema_valid_isin_with_a_bad_check_digit_is_an_invalid_message() -> None:
    error = _invalid(_tampered(SESE023, b"FR0000120271", b"FR0000120272"))

    assert error.path == "/Document/SctiesSttlmTxInstr/FinInstrmId/ISIN"
    assert "not a valid ISIN" in error.reason


def test_a_schema_valid_lei_with_a_bad_check_digit_is_an_invalid_message() -> None:
    error = _invalid(_tampered(SESE023, b"8I5DZWZKVSZI1NUHU748", b"8I5DZWZKVSZI1NUHU749"))

    assert error.path == "/Document/SctiesSttlmTxInstr/RcvgSttlmPties/Pty1/LEI"


def test_a_payment_against_the_movement_reads_as_a_deliver_with_payment() -> None:
    # No longer refused: DBIT on a DELI is a deliver with payment (T2S DWP).
    parsed = parse_sese023(
        _tampered(SESE023, b"<CdtDbtInd>CRDT</CdtDbtInd>", b"<CdtDbtInd>DBIT</CdtDbtInd>")
    )

    assert parsed == replace(INSTRUCTION, credit_debit="DBIT")


def test_quantity_zero_is_refused_unless_it_is_a_payment_free_of_delivery() -> None:
    zero = b"<Unit>0</Unit>"
    message = _tampered(SESE023, b"<Unit>250</Unit>", zero)
    assert parse_sese023(message).quantity == 0  # APMT with cash: a PFOD

    no_cash = _tampered(message, b">14312.5</Amt>", b">0</Amt>")
    error = _invalid(no_cash)
    assert "quantity must be greater than 0" in error.reason

    start = message.index(b"<SttlmAmt>")
    end = message.index(b"</SttlmAmt>") + len(b"</SttlmAmt>")
    free = _tampered(message[:start] + message[end:], b"<Pmt>APMT</Pmt>", b"<Pmt>FREE</Pmt>")
    error = _invalid(free)
    assert "quantity must be greater than 0" in error.reason


def test_an_against_payment_instruction_without_its_amount_is_an_invalid_message() -> None:
    start = SESE023.index(b"<SttlmAmt>")
    end = SESE023.index(b"</SttlmAmt>") + len(b"</SttlmAmt>")

    error = _invalid(SESE023[:start] + SESE023[end:])

    assert error.path == "/Document/SctiesSttlmTxInstr/SttlmAmt/Amt"
    assert "missing" in error.reason


def test_a_face_amount_quantity_is_refused_as_unsupported() -> None:
    face_amount = _tampered(
        SESE025, b"<Qty><Unit>100</Unit></Qty>", b"<Qty><FaceAmt>100</FaceAmt></Qty>"
    )

    error = _invalid(face_amount)

    assert error.path == "/Document/SctiesSttlmTxConf/QtyAndAcctDtls/SttldQty"
    assert "Unit" in error.reason


def test_xml_entities_are_refused() -> None:
    with_entity = SESE024.replace(
        b"<Document", b'<!DOCTYPE Document [<!ENTITY id "x">]>\n<Document', 1
    ).replace(b"lack of securities", b"&id;")

    error = _invalid(with_entity)

    assert "not well-formed XML" in str(error)
    assert "forbidden" in str(error)


def test_validate_refuses_what_the_schema_refuses_and_only_that() -> None:
    schema_errors = (
        b"not xml",
        _tampered(SESE023, b"sese.023.001.11", b"sese.023.001.10"),
        _tampered(SESE024, b"<Cd>LACK</Cd>", b"<Cd>NOPE</Cd>"),
        _tampered(SESE025, b'<Amt Ccy="EUR">5725</Amt>', b'<Amt Ccy="EUR">-5725</Amt>'),
    )
    for message in schema_errors:
        with pytest.raises(InvalidMessage):
            validate(message)
    # A bad check digit fits the schema's pattern: validate lets it by, parse refuses it.
    validate(_tampered(SESE023, b"FR0000120271", b"FR0000120272"))
    for message in (SESE023, SESE024, SESE025):
        validate(message)


def test_a_message_that_is_not_bytes_is_an_invalid_message() -> None:
    with pytest.raises(InvalidMessage, match="bytes, not str"):
        validate(SESE023.decode())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"settlement_amount": Decimal("14312.123456")}, r"settlement_amount .* 6 decimal places"),
        ({"settlement_amount": Decimal("1234567890123456789")}, r"settlement_amount .* 19 digits"),
        ({"settlement_amount": Decimal("-1")}, r"settlement_amount must be 0 or more"),
        ({"settlement_amount": Decimal("NaN")}, r"settlement_amount must be a finite number"),
        ({"settlement_amount": 14312.5}, r"settlement_amount must be a Decimal, not float"),
        ({"quantity": Decimal("0.000000000000000001")}, r"quantity .* 18 decimal places"),
        ({"quantity": Decimal("1234567890123456789")}, r"quantity .* 19 digits"),
        ({"quantity": Decimal("1234567890.123456789")}, r"quantity .* 19 digits"),
        ({"quantity": Decimal("-250")}, r"quantity must be greater than 0"),
        # Zero only for a payment free of delivery: against payment, with cash.
        ({"quantity": Decimal("0"), "settlement_amount": Decimal(0)}, r"greater than 0"),
        (
            {"quantity": Decimal("0"), "payment": "FREE", "settlement_amount": None},
            r"quantity must be greater than 0",
        ),
    ],
)
def test_an_amount_or_quantity_the_schema_cannot_carry_is_refused_before_rendering(
    changes: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        render_sese023(replace(INSTRUCTION, **changes))  # type: ignore[arg-type]


def test_a_settled_amount_the_schema_cannot_carry_is_refused_before_rendering() -> None:
    with pytest.raises(ValueError, match=r"settled_amount .* 6 decimal places"):
        render_sese025(replace(PARTIAL, settled_amount=Decimal("0.000001")))


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        # str(uuid) is 36 characters; TxId is Max35Text.
        (
            {"instruction_id": "0f8c2d8e-6b2b-4f0c-9d1e-2a3b4c5d6e7f"},
            r"instruction_id must be 1 to 35",
        ),
        ({"instruction_id": ""}, r"instruction_id must be 1 to 35"),
        ({"instruction_id": "I-1\nI-2"}, r"instruction_id has a control"),
        ({"trade_ids": ("T" * 53,)}, r"trade id must be 1 to 52"),
        ({"trade_ids": ("T-1", "T-1")}, r"more than once"),
        ({"trade_ids": ["T-1"]}, r"trade_ids must be a tuple"),
        ({"isin": "US0378331006"}, r"not a valid ISIN"),
        ({"isin": "us0378331005"}, r"not in canonical form"),
        ({"counterparty_lei": "8I5DZWZKVSZI1NUHU749"}, r"not a valid LEI"),
        ({"counterparty_lei": "8I5DZWZKVSZI1NUHU7"}, r"18 letters or digits"),
        ({"counterparty_lei": None, "counterparty_bic": None}, r"an LEI, a BIC or both"),
        ({"depository_bic": "SICV1RPPXXX"}, r"depository_bic .* not a valid BIC"),
        ({"currency": "Euro"}, r"currency must be 1 to 3"),
        ({"currency": None}, r"needs settlement_amount and currency"),
        ({"payment": "FREE"}, r"FREE .* has no settlement_amount"),
        (
            {
                "payment": "FREE",
                "settlement_amount": None,
                "currency": None,
                "credit_debit": "DBIT",
            },
            r"FREE .* has no credit_debit",
        ),
        ({"credit_debit": "DEBIT"}, r"credit_debit must be one of CRDT, DBIT"),
        ({"movement": "RECV"}, r"movement must be one of RECE, DELI"),
        ({"settlement_date": date(2026, 11, 19)}, r"before trade_date"),
        (
            {"trade_date": datetime(2026, 11, 20, 14, 31)},
            r"trade_date must be a date, not datetime",
        ),
        ({"cash_account": "C" * 35}, r"cash_account must be 1 to 34"),
    ],
)
def test_an_instruction_the_schema_cannot_carry_is_refused_when_made(
    changes: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        replace(INSTRUCTION, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "complaint"),
    [
        ({"status": "pending", "reason_code": "CYCL"}, r"'CYCL' is not a pending reason"),
        ({"status": "failed", "reason_code": "NOPE"}, r"'NOPE' is not a failed reason"),
        ({"status": "matched", "reason_code": "LACK"}, r"a matched status has no reason"),
        ({"status": "failed", "reason_code": None, "reason_text": "why"}, r"needs a reason_code"),
        ({"status": "failed", "reason_text": "x" * 211}, r"reason_text must be 1 to 210"),
        ({"status": "settled"}, r"status must be one of matched, pending, failed"),
    ],
)
def test_a_status_the_schema_cannot_carry_is_refused_when_made(
    status: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        replace(FAILED, **status)  # type: ignore[arg-type]


def test_a_confirmation_settles_quantity_zero_only_against_a_non_zero_payment() -> None:
    assert replace(PARTIAL, settled_quantity=Decimal(0)).settled_quantity == 0
    with pytest.raises(ValueError, match="settled_quantity must be greater than 0"):
        replace(PARTIAL, settled_quantity=Decimal(0), settled_amount=Decimal(0))
    with pytest.raises(ValueError, match="settled_quantity must be greater than 0"):
        replace(
            PARTIAL,
            payment="FREE",
            settled_quantity=Decimal(0),
            settled_amount=None,
            currency=None,
        )


def test_only_a_partial_settlement_has_a_remaining_quantity() -> None:
    with pytest.raises(ValueError, match="only a partial settlement has a remaining_quantity"):
        replace(PARTIAL, status="settled")
