"""Messages between settlement and the depository (csd.instructions, csd.status).

They are ISO 20022 XML, not envelopes of ours: settlement sends a sese.023.001.11
settlement instruction on csd.instructions; the depository (the CSD simulator in development)
answers on csd.status with sese.024.001.12 status advice (matched, pending, failed) and
sese.025.001.11 confirmations (settled, partially settled). The models, rendering and
schema-validated parsing are in `bo_iso20022`; this module holds what both sides agree on
beyond the schema.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import iso4217

# The outbox event_type of each message (the outbox row's label; the payload is the XML).
INSTRUCTION = "sese.023"
STATUS_ADVICE = "sese.024"
CONFIRMATION = "sese.025"

# ISO 4217 minor units (the currency's "exponent": USD 2, JPY 0, BHD 3), from the `iso4217`
# package (the ISO 4217 table as published). A code without one (metals, funds) gets 2.
DEFAULT_MINOR_UNITS = 2


def minor_units(currency: str) -> int:
    """The number of decimals the currency's cash amounts are settled in."""
    try:
        exponent = iso4217.Currency(currency.upper()).exponent
    except (ValueError, KeyError):
        return DEFAULT_MINOR_UNITS
    return DEFAULT_MINOR_UNITS if exponent is None else int(exponent)


def settlement_amount(amount: Decimal, currency: str) -> Decimal:
    """The cash amount as the depository settles it: price x quantity rounded to the
    currency's minor units, half to even (banker's rounding, no bias over many trades).
    The instruction stores this rounded amount, so the instruction, its sese.023 and what
    settlement reports as settled agree to the cent."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_EVEN)
