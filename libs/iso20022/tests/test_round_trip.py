"""Every message rendered from generated inputs is valid against its XSD (checked here with
a schema loaded apart from the library's) and parses back to what it was rendered from."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from importlib import resources
from xml.etree import ElementTree

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.iso7064 import mod_97_10

from bo_iso20022 import (
    SESE_023,
    SESE_024,
    SESE_025,
    SettlementConfirmation,
    SettlementInstruction,
    StatusAdvice,
    failing_reason_codes,
    message_type,
    parse,
    parse_sese023,
    parse_sese024,
    parse_sese025,
    pending_reason_codes,
    render_sese023,
    render_sese024,
    render_sese025,
    validate,
)

# Real ISINs of the markets settlement knows (and two more), all with good check digits.
ISINS = (
    "US0378331005",  # Apple
    "US5949181045",  # Microsoft
    "US02079K3059",  # Alphabet
    "GB0002634946",  # BAE Systems
    "GB0005405286",  # HSBC
    "FR0000120271",  # TotalEnergies
    "FR0000131104",  # BNP Paribas
    "DE0007164600",  # SAP
    "DE0005140008",  # Deutsche Bank
    "NL0010273215",  # ASML
    "JP3633400001",  # Toyota
    "CH0038863350",  # Nestle
)
DEPOSITORY_BICS = ("DTCYUS33XXX", "CRSTGB22XXX", "SICVFRPPXXX", "DAKVDEFFXXX", "NECINL2AXXX")
CURRENCIES = ("USD", "EUR", "GBP", "CHF", "JPY")
# The published sha256 of each XSD (see bo_iso20022/xsd/SOURCES.md).
SHA256 = {
    SESE_023: "35b44a54b8ac767fabca27a26cba700929f1859c2ad70b2a8f1c0967ec182aa4",
    SESE_024: "df7c2d174e11c003a483e057a4bc6d205e1a7a1be63685af21209146160f2064",
    SESE_025: "7f4d13cd738f87247a2b179b2741a13c55c339cc026759f32efe3eb6fbe47a45",
}

_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _xsd(message: str) -> bytes:
    return resources.files("bo_iso20022.xsd").joinpath(f"{message}.xsd").read_bytes()


# Loaded here, not through the library, so that the check does not trust its code.
INDEPENDENT_SCHEMAS = {name: xmlschema.XMLSchema(_xsd(name)) for name in SHA256}


def assert_schema_valid(message: bytes, message_name: str) -> None:
    INDEPENDENT_SCHEMAS[message_name].validate(message)
    validate(message)
    assert message_type(message) == message_name


# Any printable text (letters, digits, punctuation, symbols of any script, and spaces).
def texts(max_size: int) -> st.SearchStrategy[str]:
    characters = st.characters(
        codec="utf-8", categories=("L", "N", "P", "S"), include_characters=" "
    )
    return st.text(characters, min_size=1, max_size=max_size)


@st.composite
def leis(draw: st.DrawFn) -> str:
    base = draw(st.text(_ALPHANUMERIC, min_size=18, max_size=18))
    return base + mod_97_10.calc_check_digits(base)


@st.composite
def bics(draw: st.DrawFn) -> str:
    institution = draw(st.text(_LETTERS, min_size=4, max_size=4))
    country = draw(st.sampled_from(("US", "GB", "FR", "DE", "NL", "BE", "LU", "CH", "JP")))
    location = draw(st.text(_ALPHANUMERIC, min_size=2, max_size=2))
    branch = draw(st.sampled_from(("", "XXX")) | st.text(_ALPHANUMERIC, min_size=3, max_size=3))
    return institution + country + location + branch


def decimals(
    *, total_digits: int, fraction_digits: int, minimum: int
) -> st.SearchStrategy[Decimal]:
    """Every decimal the schema type can carry: up to total_digits digits, of which up to
    fraction_digits after the point (trailing zeros included, as callers may give them)."""
    return st.builds(
        lambda integer, places: Decimal(integer).scaleb(-places),
        st.integers(min_value=minimum, max_value=10**total_digits - 1),
        st.integers(min_value=0, max_value=fraction_digits),
    )


quantities = decimals(total_digits=18, fraction_digits=17, minimum=1)
amounts = decimals(total_digits=18, fraction_digits=5, minimum=0)
trade_id_lists = st.lists(texts(52), max_size=5, unique=True).map(tuple)
dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2099, 12, 31))


@st.composite
def cash_legs(draw: st.DrawFn) -> tuple[str, Decimal | None, str | None, str | None]:
    """Payment, amount, currency and credit/debit indicator: FREE has none; APMT goes the
    conventional way (None or the indicator itself) or with payment (the other one)."""
    payment = draw(st.sampled_from(("APMT", "FREE")))
    if payment == "FREE":
        return payment, None, None, None
    indicator = draw(st.sampled_from((None, "CRDT", "DBIT")))
    return payment, draw(amounts), draw(st.sampled_from(CURRENCIES)), indicator


def quantities_for(payment: str, amount: Decimal | None) -> st.SearchStrategy[Decimal]:
    """Positive, or also 0 (a payment free of delivery) against a non-zero payment."""
    if payment == "APMT" and amount:
        return quantities | st.just(Decimal(0))
    return quantities


@st.composite
def instructions(draw: st.DrawFn) -> SettlementInstruction:
    payment, amount, currency, indicator = draw(cash_legs())
    trade_date = draw(dates)
    counterparty_lei, counterparty_bic = draw(
        st.one_of(
            st.tuples(leis(), st.none()),
            st.tuples(st.none(), bics()),
            st.tuples(leis(), bics()),
        )
    )
    return SettlementInstruction(
        instruction_id=draw(texts(35)),
        movement=draw(st.sampled_from(("RECE", "DELI"))),
        payment=payment,  # type: ignore[arg-type]
        trade_date=trade_date,
        settlement_date=trade_date + timedelta(days=draw(st.integers(0, 10))),
        isin=draw(st.sampled_from(ISINS)),
        quantity=draw(quantities_for(payment, amount)),
        settlement_amount=amount,
        currency=currency,
        depository_bic=draw(st.sampled_from(DEPOSITORY_BICS) | bics()),
        counterparty_lei=counterparty_lei,
        counterparty_bic=counterparty_bic,
        safekeeping_account=draw(texts(35)),
        cash_account=draw(st.none() | texts(34)),
        trade_ids=draw(trade_id_lists),
        credit_debit=indicator,  # type: ignore[arg-type]
    )


@st.composite
def status_advices(draw: st.DrawFn) -> StatusAdvice:
    status = draw(st.sampled_from(("matched", "pending", "failed")))
    reason_code = reason_text = None
    if status != "matched":
        codes = pending_reason_codes() if status == "pending" else failing_reason_codes()
        reason_code = draw(st.none() | st.sampled_from(sorted(codes)))
        if reason_code is not None:
            reason_text = draw(st.none() | texts(210))
    return StatusAdvice(
        instruction_id=draw(texts(35)),
        status=status,  # type: ignore[arg-type]
        reason_code=reason_code,
        reason_text=reason_text,
    )


@st.composite
def confirmations(draw: st.DrawFn) -> SettlementConfirmation:
    payment, amount, currency, indicator = draw(cash_legs())
    status = draw(st.sampled_from(("settled", "partially_settled")))
    return SettlementConfirmation(
        instruction_id=draw(texts(35)),
        status=status,  # type: ignore[arg-type]
        movement=draw(st.sampled_from(("RECE", "DELI"))),
        payment=payment,  # type: ignore[arg-type]
        isin=draw(st.sampled_from(ISINS)),
        settled_quantity=draw(quantities_for(payment, amount)),
        remaining_quantity=draw(st.none() | quantities) if status == "partially_settled" else None,
        settled_amount=amount,
        currency=currency,
        settlement_date=draw(dates),
        trade_ids=draw(trade_id_lists),
        credit_debit=indicator,  # type: ignore[arg-type]
    )


EXAMPLE = SettlementInstruction(
    instruction_id="0f8c2d8e6b2b4f0c9d1e2a3b4c5d6e7f",
    movement="RECE",
    payment="APMT",
    trade_date=date(2026, 11, 20),
    settlement_date=date(2026, 11, 23),
    isin="US0378331005",
    quantity=Decimal("100"),
    settlement_amount=Decimal("18925.00"),
    currency="USD",
    depository_bic="DTCYUS33XXX",
    counterparty_lei="784F5XWPLTWKTBV3E584",
    counterparty_bic=None,
    safekeeping_account="ACC-001",
    cash_account="CASH-USD-001",
    trade_ids=("3f2b8c1e-5a4d-4e8f-9b7a-1c2d3e4f5a6b", "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"),
)


@settings(max_examples=150, deadline=None)
@given(instruction=instructions())
def test_every_rendered_instruction_is_schema_valid_and_parses_back(
    instruction: SettlementInstruction,
) -> None:
    message = render_sese023(instruction)
    assert_schema_valid(message, SESE_023)
    assert parse_sese023(message) == instruction
    assert parse(message) == instruction


@settings(max_examples=150, deadline=None)
@given(status=status_advices())
def test_every_rendered_status_advice_is_schema_valid_and_parses_back(
    status: StatusAdvice,
) -> None:
    message = render_sese024(status)
    assert_schema_valid(message, SESE_024)
    assert parse_sese024(message) == status
    assert parse(message) == status


@settings(max_examples=150, deadline=None)
@given(confirmation=confirmations())
def test_every_rendered_confirmation_is_schema_valid_and_parses_back(
    confirmation: SettlementConfirmation,
) -> None:
    message = render_sese025(confirmation)
    assert_schema_valid(message, SESE_025)
    assert parse_sese025(message) == confirmation
    assert parse(message) == confirmation


@pytest.mark.parametrize("message_name", sorted(SHA256))
def test_shipped_schemas_are_the_published_files(message_name: str) -> None:
    assert hashlib.sha256(_xsd(message_name)).hexdigest() == SHA256[message_name]


def _find_all(message: bytes, path: str) -> list[str]:
    root = ElementTree.fromstring(message)
    namespace = root.tag[1:].partition("}")[0]
    qualified = "/".join(f"{{{namespace}}}{step}" for step in path.split("/"))
    return [element.text or "" for element in root.iterfind(qualified)]


def test_instruction_carries_each_covered_trade_id_in_trade_details() -> None:
    message = render_sese023(EXAMPLE)

    assert _find_all(message, "SctiesSttlmTxInstr/TradDtls/TradId") == list(EXAMPLE.trade_ids)


def test_instruction_names_the_place_of_settlement_on_the_counterparty_side() -> None:
    receive = render_sese023(EXAMPLE)
    deliver = render_sese023(replace(EXAMPLE, movement="DELI"))

    assert _find_all(receive, "SctiesSttlmTxInstr/DlvrgSttlmPties/Dpstry/Id/AnyBIC") == [
        "DTCYUS33XXX"
    ]
    assert _find_all(receive, "SctiesSttlmTxInstr/SttlmAmt/CdtDbtInd") == ["DBIT"]
    assert _find_all(deliver, "SctiesSttlmTxInstr/RcvgSttlmPties/Pty1/LEI") == [
        "784F5XWPLTWKTBV3E584"
    ]
    assert _find_all(deliver, "SctiesSttlmTxInstr/SttlmAmt/CdtDbtInd") == ["CRDT"]


def test_amounts_and_quantities_render_without_exponent_or_trailing_zeros() -> None:
    message = render_sese023(
        replace(EXAMPLE, quantity=Decimal("1E+2"), settlement_amount=Decimal("0.10000"))
    )

    assert _find_all(message, "SctiesSttlmTxInstr/QtyAndAcctDtls/SttlmQty/Qty/Unit") == ["100"]
    assert _find_all(message, "SctiesSttlmTxInstr/SttlmAmt/Amt") == ["0.1"]


def test_parse_tells_each_message_from_its_namespace() -> None:
    matched = StatusAdvice(instruction_id="I-1", status="matched")
    settled = SettlementConfirmation(
        instruction_id="I-1",
        status="settled",
        movement="RECE",
        payment="FREE",
        isin="GB0002634946",
        settled_quantity=Decimal("5"),
        settled_amount=None,
        currency=None,
        settlement_date=date(2026, 11, 23),
    )

    assert parse(render_sese023(EXAMPLE)) == EXAMPLE
    assert parse(render_sese024(matched)) == matched
    assert parse(render_sese025(settled)) == settled


def test_a_receive_with_payment_renders_its_credit_and_parses_back() -> None:
    # Receive 40 and be paid: RECE against payment, CdtDbtInd CRDT (T2S: RWP).
    rwp = replace(EXAMPLE, quantity=Decimal("40"), credit_debit="CRDT")
    message = render_sese023(rwp)

    assert_schema_valid(message, SESE_023)
    assert _find_all(message, "SctiesSttlmTxInstr/SttlmTpAndAddtlParams/SctiesMvmntTp") == ["RECE"]
    assert _find_all(message, "SctiesSttlmTxInstr/SttlmAmt/CdtDbtInd") == ["CRDT"]
    assert parse_sese023(message) == rwp
    assert parse_sese023(message).credit_debit == "CRDT"


def test_a_deliver_with_payment_renders_its_debit_and_parses_back() -> None:
    dwp = replace(EXAMPLE, movement="DELI", credit_debit="DBIT")
    message = render_sese023(dwp)

    assert_schema_valid(message, SESE_023)
    assert _find_all(message, "SctiesSttlmTxInstr/SttlmAmt/CdtDbtInd") == ["DBIT"]
    parsed = parse_sese023(message)
    assert (parsed, parsed.credit_debit, parsed.indicator) == (dwp, "DBIT", "DBIT")


def test_the_conventional_indicator_given_explicitly_is_kept_as_none() -> None:
    explicit = replace(EXAMPLE, credit_debit="DBIT")

    assert explicit == EXAMPLE and explicit.credit_debit is None
    assert explicit.indicator == "DBIT"
    assert parse_sese023(render_sese023(explicit)) == EXAMPLE


@pytest.mark.parametrize(("movement", "indicator"), [("RECE", "DBIT"), ("DELI", "CRDT")])
def test_a_payment_free_of_delivery_renders_quantity_zero_and_parses_back(
    movement: str, indicator: str
) -> None:
    # By our convention a PFOD is RECE when we pay, DELI when we are paid.
    pfod = replace(
        EXAMPLE,
        movement=movement,  # type: ignore[arg-type]
        quantity=Decimal(0),
        settlement_amount=Decimal("250.00"),
        credit_debit=indicator,  # type: ignore[arg-type]
    )
    message = render_sese023(pfod)

    assert_schema_valid(message, SESE_023)
    assert _find_all(message, "SctiesSttlmTxInstr/QtyAndAcctDtls/SttlmQty/Qty/Unit") == ["0"]
    assert _find_all(message, "SctiesSttlmTxInstr/SttlmTpAndAddtlParams/Pmt") == ["APMT"]
    assert _find_all(message, "SctiesSttlmTxInstr/SttlmAmt/CdtDbtInd") == [indicator]
    assert parse_sese023(message) == pfod


def test_a_payment_free_of_delivery_confirmation_settles_quantity_zero() -> None:
    confirmation = SettlementConfirmation(
        instruction_id="I-1",
        status="settled",
        movement="DELI",
        payment="APMT",
        isin="GB0002634946",
        settled_quantity=Decimal(0),
        settled_amount=Decimal("250.00"),
        currency="GBP",
        settlement_date=date(2026, 11, 23),
        credit_debit="CRDT",
    )
    message = render_sese025(confirmation)

    assert_schema_valid(message, SESE_025)
    assert _find_all(message, "SctiesSttlmTxConf/QtyAndAcctDtls/SttldQty/Qty/Unit") == ["0"]
    assert parse_sese025(message) == confirmation
    dwp = replace(confirmation, settled_quantity=Decimal(60), credit_debit="DBIT")
    message = render_sese025(dwp)
    assert_schema_valid(message, SESE_025)
    assert _find_all(message, "SctiesSttlmTxConf/SttldAmt/CdtDbtInd") == ["DBIT"]
    assert parse_sese025(message).credit_debit == "DBIT"
