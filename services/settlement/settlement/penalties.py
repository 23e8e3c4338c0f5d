"""Settlement fails: their age in business days and the CSDR cash penalty they accrue.

Pure: no I/O, no clock. The business-day calendar is an argument (a predicate), so is the
day the fail is looked at (`as_of`).

CSDR settlement discipline, Commission Delegated Regulation (EU) 2017/389 (as amended by
(EU) 2021/70), in force since 2022-02-01: for every business day an instruction fails to
settle, the CSD charges the failing participant

    penalty of the day = reference value x daily rate of the day

and the penalties of the days are summed. The rates are data below, each with the date it
took effect; a change of rate is a new row, never an edit. What this module simplifies,
knowingly:

- **Days counted.** The business days of the market's calendar from the intended settlement
  date (ISD) on, each counted once it is over: a fail is known, and the CSD computes the
  day's penalty, at the end of the day. So on the ISD itself the age is 0 and nothing has
  accrued; the day after (a business day), age 1, one day's penalty (the ISD's); and so on.
  CSDs use their own operating calendar (e.g. TARGET2 days); we use the market's exchange
  calendar, which is what settlement dates are computed with.
- **Reference value.** CSDR values the securities at the closing price of the most relevant
  market of each business day of the fail; we have no market data, so the reference value
  is the instruction's quantity times the trade price (for a netted instruction, the
  quantity-weighted price of the trades it covers), constant over the fail.
- **Asset class.** The trade does not say whether the ISIN is a share or a bond. The class
  comes from a small table of ISIN prefixes (longest prefix wins); an ISIN in no row is a
  liquid share (the most common case here: exchange-traded equities).
- **Lack of cash** (sese.024 reason MONY): the rate is the central bank's official overnight
  credit rate of the settlement currency (for EUR, the ECB marginal lending facility), per
  year, floored at zero, divided by 365 for a day. Rates are a table per currency with the
  date each took effect; a currency without a row has no computable cash penalty (None).
  Every other reason (LACK and the rest, or none for a pending instruction past its ISD) is
  charged at the securities rate of the asset class.
- **Rounding.** Each day's penalty is rounded to the currency's minor units (EUR cents) half
  to even, then the days are summed; the sum is therefore additive over days.
- **Scope.** Only markets under CSDR (the EU/EEA: FR, DE, NL here) accrue penalties. The UK
  left the EU on 2020-12-31 and did not bring the CSDR penalty regime into UK law; the US is
  not under CSDR either. Their fails are listed with their age but no penalty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from bo_common.contracts.csd import minor_units

AssetClass = Literal[
    "liquid_shares",
    "illiquid_shares",
    "sme_growth_market",
    "sovereign_bonds",
    "other_bonds",
    "sme_growth_market_bonds",
    "other_instruments",
]
PenaltyBasis = Literal["securities", "cash"]

BASIS_POINT = Decimal("0.0001")
CSDR_START = date(2022, 2, 1)


@dataclass(frozen=True)
class Rate:
    effective_from: date
    # Securities: the daily rate (a fraction of the reference value). Cash: the annual
    # central bank rate in percent (divided by 100 and 365 for a day).
    value: Decimal


# Annex of Delegated Regulation (EU) 2017/389, as amended by (EU) 2021/70 (from 2022-02-01).
SECURITIES_RATES: dict[AssetClass, tuple[Rate, ...]] = {
    "liquid_shares": (Rate(CSDR_START, Decimal("1.0") * BASIS_POINT),),
    "illiquid_shares": (Rate(CSDR_START, Decimal("0.5") * BASIS_POINT),),
    "sme_growth_market": (Rate(CSDR_START, Decimal("0.25") * BASIS_POINT),),
    "sovereign_bonds": (Rate(CSDR_START, Decimal("0.10") * BASIS_POINT),),
    "other_bonds": (Rate(CSDR_START, Decimal("0.20") * BASIS_POINT),),
    "sme_growth_market_bonds": (Rate(CSDR_START, Decimal("0.15") * BASIS_POINT),),
    "other_instruments": (Rate(CSDR_START, Decimal("0.5") * BASIS_POINT),),
}

# Official overnight credit rate of the central bank of the currency, percent per year, with
# the date each took effect. EUR: ECB marginal lending facility (a simplification of the
# "official interest rate for overnight credit"; kept by hand, a new decision is a new row).
CASH_RATES: dict[str, tuple[Rate, ...]] = {
    "EUR": (
        Rate(date(2019, 9, 18), Decimal("0.25")),
        Rate(date(2022, 7, 27), Decimal("0.75")),
        Rate(date(2022, 9, 14), Decimal("1.50")),
        Rate(date(2022, 11, 2), Decimal("2.25")),
        Rate(date(2022, 12, 21), Decimal("2.75")),
        Rate(date(2023, 2, 8), Decimal("3.25")),
        Rate(date(2023, 3, 22), Decimal("3.75")),
        Rate(date(2023, 5, 10), Decimal("4.00")),
        Rate(date(2023, 6, 21), Decimal("4.25")),
        Rate(date(2023, 8, 2), Decimal("4.50")),
        Rate(date(2023, 9, 20), Decimal("4.75")),
        Rate(date(2024, 6, 12), Decimal("4.50")),
        Rate(date(2024, 9, 18), Decimal("3.90")),
        Rate(date(2024, 10, 23), Decimal("3.65")),
        Rate(date(2024, 12, 18), Decimal("3.40")),
        Rate(date(2025, 2, 5), Decimal("3.15")),
        Rate(date(2025, 3, 12), Decimal("2.90")),
        Rate(date(2025, 4, 23), Decimal("2.65")),
        Rate(date(2025, 6, 11), Decimal("2.40")),
    ),
}
DAYS_PER_YEAR = Decimal(365)

# Asset class by ISIN prefix (longest match wins); no match: liquid shares.
ASSET_CLASS_BY_ISIN_PREFIX: dict[str, AssetClass] = {
    # German federal securities (Bunds, Bobls, Schatz): Finanzagentur ISINs.
    "DE000110": "sovereign_bonds",
    "DE000111": "sovereign_bonds",
    "DE000114": "sovereign_bonds",
    # French OATs (Agence France Trésor) issued as FR0010..., FR0011..., FR0012..., FR0013...
    # share their prefix with other issuers: listed one by one when traded.
    # Dutch State Loans (DSL).
    "NL0000102": "sovereign_bonds",
    "NL0010071189": "sovereign_bonds",
}
DEFAULT_ASSET_CLASS: AssetClass = "liquid_shares"

# sese.024 reasons that are a lack of cash (FailingReason4Code MONY: insufficient money).
CASH_REASONS = frozenset({"MONY"})


class NoRate(Exception):
    """No rate covers the day (before CSDR, or a currency without a cash rate)."""


def asset_class_of(isin: str) -> AssetClass:
    matches = [p for p in ASSET_CLASS_BY_ISIN_PREFIX if isin.upper().startswith(p)]
    return ASSET_CLASS_BY_ISIN_PREFIX[max(matches, key=len)] if matches else DEFAULT_ASSET_CLASS


def reason_code(status_reason: str | None) -> str | None:
    """The sese.024 code of an instruction's status reason ("LACK: text" -> "LACK")."""
    if not status_reason:
        return None
    return status_reason.split(":", 1)[0].strip() or None


def basis_of(reason: str | None) -> PenaltyBasis:
    return "cash" if reason in CASH_REASONS else "securities"


def _rate_on(rates: tuple[Rate, ...], day: date) -> Rate:
    applicable = [r for r in rates if r.effective_from <= day]
    if not applicable:
        raise NoRate(f"no rate in effect on {day}")
    return max(applicable, key=lambda r: r.effective_from)


def daily_rate(
    day: date, *, basis: PenaltyBasis, asset_class: AssetClass, currency: str
) -> Decimal:
    """The fraction of the reference value charged for one day of fail."""
    if day < CSDR_START:
        raise NoRate(f"CSDR cash penalties apply from {CSDR_START}, not on {day}")
    if basis == "cash":
        rates = CASH_RATES.get(currency.upper())
        if rates is None:
            raise NoRate(f"no central bank overnight rate for {currency}")
        annual = max(_rate_on(rates, day).value, Decimal(0))
        return annual / Decimal(100) / DAYS_PER_YEAR
    return _rate_on(SECURITIES_RATES[asset_class], day).value


def _business_days(
    start: date, end: date, is_business_day: Callable[[date], bool]
) -> Iterator[date]:
    day = start
    while day < end:
        if is_business_day(day):
            yield day
        day += timedelta(days=1)


def fail_days(
    intended_settlement_date: date, as_of: date, is_business_day: Callable[[date], bool]
) -> list[date]:
    """The business days of fail that are over by `as_of`: ISD <= day < as_of."""
    return list(_business_days(intended_settlement_date, as_of, is_business_day))


def age_in_business_days(
    intended_settlement_date: date, as_of: date, is_business_day: Callable[[date], bool]
) -> int:
    """0 on (or before) the ISD; +1 for every business day of fail that is over."""
    return len(fail_days(intended_settlement_date, as_of, is_business_day))


def reference_value(quantity: Decimal, price: Decimal) -> Decimal:
    return abs(quantity) * price


def daily_penalty(
    day: date,
    *,
    reference: Decimal,
    basis: PenaltyBasis,
    asset_class: AssetClass,
    currency: str,
) -> Decimal:
    """One day's penalty, in the currency, rounded to its minor units half to even."""
    rate = daily_rate(day, basis=basis, asset_class=asset_class, currency=currency)
    exponent = Decimal(1).scaleb(-minor_units(currency))
    return (reference * rate).quantize(exponent, rounding=ROUND_HALF_EVEN)


def accrued_penalty(
    days: Iterable[date],
    *,
    reference: Decimal,
    basis: PenaltyBasis,
    asset_class: AssetClass,
    currency: str,
) -> Decimal:
    """The sum of the daily penalties of the days (each rounded first)."""
    exponent = Decimal(1).scaleb(-minor_units(currency))
    total = Decimal(0).quantize(exponent)
    for day in days:
        total += daily_penalty(
            day, reference=reference, basis=basis, asset_class=asset_class, currency=currency
        )
    return total


@dataclass(frozen=True)
class FailAssessment:
    age: int
    fail_days: tuple[date, ...]
    reason_code: str | None
    basis: PenaltyBasis
    asset_class: AssetClass
    reference_value: Decimal
    # None: no CSDR penalty (market not under CSDR, or no rate for the days).
    penalty: Decimal | None
    penalty_note: str | None
    # Who pays, seen from the firm: our own fail (we lack the securities we deliver, or the
    # cash we pay) or the counterparty's; None when the reason does not say.
    liable: Literal["us", "counterparty"] | None


def liable_party(
    reason: str | None, direction: str, credit_debit: str | None = None
) -> Literal["us", "counterparty"] | None:
    """LACK on a delivery (or MONY when we pay) is our fail; the reverse is the
    counterparty's. We pay when credit_debit is DBIT; without it, conventionally, for what
    we receive (a receive/deliver with payment pays the other way). Other reasons do not say
    whose the fail is."""
    if reason == "LACK":
        return "us" if direction == "DELIVER" else "counterparty"
    if reason == "MONY":
        we_pay = credit_debit == "DBIT" if credit_debit else direction == "RECEIVE"
        return "us" if we_pay else "counterparty"
    return None


def assess(
    *,
    intended_settlement_date: date,
    as_of: date,
    is_business_day: Callable[[date], bool],
    csdr: bool,
    status_reason: str | None,
    direction: str,
    isin: str,
    quantity: Decimal,
    price: Decimal,
    currency: str,
    credit_debit: str | None = None,
) -> FailAssessment:
    """Everything /v1/fails shows about one failing instruction."""
    days = tuple(fail_days(intended_settlement_date, as_of, is_business_day))
    code = reason_code(status_reason)
    basis = basis_of(code)
    asset_class = asset_class_of(isin)
    reference = reference_value(quantity, price)
    penalty: Decimal | None = None
    note: str | None = None
    if not csdr:
        note = "market not under CSDR: no cash penalty"
    else:
        try:
            penalty = accrued_penalty(
                days, reference=reference, basis=basis, asset_class=asset_class, currency=currency
            )
        except NoRate as error:
            note = str(error)
    return FailAssessment(
        age=len(days),
        fail_days=days,
        reason_code=code,
        basis=basis,
        asset_class=asset_class,
        reference_value=reference,
        penalty=penalty,
        penalty_note=note,
        liable=liable_party(code, direction, credit_debit),
    )
