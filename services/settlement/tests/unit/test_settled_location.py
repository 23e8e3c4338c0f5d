"""settlement.settled and partially_settled say where the trade settled, from the SSI the
instruction was sent with; an instruction from before instructions kept their SSI names
its depository alone; an event without a location (an older one) still parses."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from bo_common.contracts.settlement import SettlementSettled
from settlement.handlers import settled_location
from settlement.tables import SsiRow


def ssi(depository: str = "DTC") -> SsiRow:
    return SsiRow(
        ssi_id=7,
        counterparty_lei="784F5XWPLTWKTBV3E584",
        market="US",
        asset_class="equity",
        version=1,
        depository=depository,
        custodian_bic="IRVTUS3NXXX",
        safekeeping_account="SAFE-US-A-001",
        cash_account="CASH-US-A-001",
        effective_from=date(2020, 1, 1),
    )


def test_the_location_is_the_depository_bic_and_the_ssi_custodian() -> None:
    assert settled_location(ssi(), depository="DTC", market="US") == {
        "depository": "DTCYUS33XXX",
        "custodian_bic": "IRVTUS3NXXX",
        "safekeeping_account": "SAFE-US-A-001",
    }


def test_an_instruction_without_its_ssi_names_the_depository_alone() -> None:
    assert settled_location(None, depository="CREST", market="UK") == {"depository": "CRSTGB22XXX"}


def test_a_settled_event_without_a_location_still_parses() -> None:
    old = {
        "trade_id": "T-1",
        "instruction_id": "I-1",
        "account": "ACC-1",
        "side": "BUY",
        "isin": "US0378331005",
        "quantity": "100",
        "amount": "2000.00",
        "currency": "USD",
        "settlement_date": "2026-11-21",
        "counterparty_lei": "784F5XWPLTWKTBV3E584",
    }
    event = SettlementSettled.model_validate(old)

    assert (event.depository, event.custodian_bic, event.safekeeping_account) == (None,) * 3
    assert event.quantity == Decimal(100)
    located = SettlementSettled.model_validate(
        old | settled_location(ssi(), depository="DTC", market="US")
    )
    assert located.depository == "DTCYUS33XXX"
