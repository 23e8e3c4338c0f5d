"""What settlement sends to and reads from the depository, without a broker: the cash
rounding, the place of settlement, and csd.status messages read or refused."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from stdnum import bic as stdnum_bic

import bo_iso20022
from bo_common.consumer import PoisonMessage, raw_message_id
from bo_common.contracts.csd import settlement_amount
from settlement.handlers import CsdStatus, csd_status_of, instruction_id_of
from settlement.markets import MARKETS, depository_bic

ID = instruction_id_of("obligation-1")


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [
        (Decimal("0.9999999999"), Decimal("1.00")),
        (Decimal("18925"), Decimal("18925.00")),
        (Decimal("0.125"), Decimal("0.12")),  # half to even
        (Decimal("0.135"), Decimal("0.14")),
        (Decimal("123.45678"), Decimal("123.46")),
    ],
)
def test_the_cash_is_rounded_half_even_to_the_cent(amount: Decimal, rounded: Decimal) -> None:
    assert str(settlement_amount(amount, "USD")) == str(rounded)


def test_the_instruction_id_fits_max35text() -> None:
    assert len(ID) == 32
    assert instruction_id_of("obligation-1") == ID


@pytest.mark.parametrize(
    ("depository", "market", "bic"),
    [
        ("DTC", "US", "DTCYUS33XXX"),
        ("CREST", "UK", "CRSTGB22XXX"),
        ("Euroclear UK", "UK", "CRSTGB22XXX"),
        ("Euroclear France", "FR", "SICVFRPPXXX"),
        ("Clearstream Banking Frankfurt", "DE", "DAKVDEFFXXX"),
        ("clearstream frankfurt", "DE", "DAKVDEFFXXX"),
        ("Euroclear Nederland", "NL", "NECINL2AXXX"),
        ("NECINL2A", "NL", "NECINL2AXXX"),
        ("Some other name", "FR", "SICVFRPPXXX"),
    ],
)
def test_the_place_of_settlement_is_the_depository_bic(
    depository: str, market: str, bic: str
) -> None:
    assert depository_bic(depository, market) == bic


def test_every_market_depository_bic_is_a_valid_bic() -> None:
    for market in MARKETS.values():
        assert stdnum_bic.is_valid(market.depository_bic), market


def test_a_status_advice_and_a_confirmation_are_read() -> None:
    failed = bo_iso20022.render_sese024(
        bo_iso20022.StatusAdvice(instruction_id=ID, status="failed", reason_code="MONY")
    )
    partial = bo_iso20022.render_sese025(
        bo_iso20022.SettlementConfirmation(
            instruction_id=ID,
            status="partially_settled",
            movement="DELI",
            payment="APMT",
            isin="US0378331005",
            settled_quantity=Decimal("40"),
            remaining_quantity=Decimal("60"),
            settled_amount=Decimal("7570"),
            currency="USD",
            settlement_date=date(2026, 3, 4),
        )
    )

    assert csd_status_of(failed) == CsdStatus(ID, "failed", "MONY")
    assert csd_status_of(partial) == CsdStatus(
        ID, "partially_settled", settled_quantity=Decimal("40"), settled_amount=Decimal("7570")
    )


@pytest.mark.parametrize(
    "message",
    [
        b"not xml",
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:sese.025.001.11"><x/></Document>',
    ],
)
def test_an_invalid_status_message_is_poison_with_the_validation_error(message: bytes) -> None:
    with pytest.raises(PoisonMessage) as raised:
        csd_status_of(message)
    assert str(raised.value)


def test_an_instruction_on_the_status_topic_is_poison() -> None:
    instruction = bo_iso20022.SettlementInstruction(
        instruction_id=ID,
        movement="RECE",
        payment="FREE",
        trade_date=date(2026, 3, 3),
        settlement_date=date(2026, 3, 4),
        isin="US0378331005",
        quantity=Decimal("1"),
        settlement_amount=None,
        currency=None,
        depository_bic="DTCYUS33XXX",
        counterparty_lei="784F5XWPLTWKTBV3E584",
        counterparty_bic=None,
        safekeeping_account="S",
        cash_account=None,
        trade_ids=("T-1",),
    )
    with pytest.raises(PoisonMessage, match="not a status"):
        csd_status_of(bo_iso20022.render_sese023(instruction))


def test_a_raw_message_id_is_the_same_for_the_same_bytes_only() -> None:
    assert raw_message_id("csd.status", b"a") == raw_message_id("csd.status", b"a")
    assert raw_message_id("csd.status", b"a") != raw_message_id("csd.status", b"b")
    assert raw_message_id("csd.status", b"a") != raw_message_id("other", b"a")


@pytest.mark.parametrize(
    ("currency", "amount", "settled"),
    [
        ("JPY", "1000.5", "1000"),
        ("JPY", "1001.5", "1002"),
        ("USD", "10.005", "10.00"),
        ("BHD", "1.23456", "1.235"),
        ("XAU", "1.234", "1.23"),
        ("ZZZ", "1.235", "1.24"),
    ],
)
def test_cash_is_rounded_half_even_to_the_currencys_iso_4217_minor_units(
    currency: str, amount: str, settled: str
) -> None:
    assert str(settlement_amount(Decimal(amount), currency)) == settled
