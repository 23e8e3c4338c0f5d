"""Checks and formats for the values the sese messages carry: texts, identifiers, dates and
decimals, each within what its XSD type allows. Every check raises ValueError naming the
field, so a bad input is refused before any XML is built."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from stdnum import bic as stdnum_bic
from stdnum import isin as stdnum_isin
from stdnum import lei as stdnum_lei
from stdnum.exceptions import ValidationError

# Lengths of the ISO 20022 text types (MaxNText: 1 to N characters).
MAX35 = 35
MAX34 = 34
MAX52 = 52
MAX210 = 210

# ActiveCurrencyAndAmount: xs:decimal, totalDigits 18, fractionDigits 5, minInclusive 0.
AMOUNT_TOTAL_DIGITS = 18
AMOUNT_FRACTION_DIGITS = 5
# DecimalNumber (the Unit quantity): xs:decimal, totalDigits 18, fractionDigits 17, no bound.
QUANTITY_TOTAL_DIGITS = 18
QUANTITY_FRACTION_DIGITS = 17

# The schema patterns. The check-digit rules (python-stdnum) are stricter; these catch what
# stdnum would tolerate, such as an LEI of the wrong length.
_LEI_PATTERN = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
_CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")


def check_text(value: object, *, field: str, max_length: int) -> str:
    """A MaxNText: 1 to max_length printable characters (no control characters, which XML
    either cannot carry or would not give back unchanged)."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= max_length:
        raise ValueError(
            f"{field} must be 1 to {max_length} characters (the schema's Max{max_length}Text), "
            f"got {len(value)}: {value!r}"
        )
    if not value.isprintable():
        raise ValueError(f"{field} has a control or separator character: {value!r}")
    return value


def check_isin(value: object, *, field: str = "isin") -> str:
    text = check_text(value, field=field, max_length=12)
    try:
        canonical = str(stdnum_isin.validate(text))
    except ValidationError as error:
        raise ValueError(f"{field} {text!r} is not a valid ISIN ({error})") from None
    if canonical != text:
        raise ValueError(f"{field} {text!r} is not in canonical form ({canonical!r})")
    return text


def check_lei(value: object, *, field: str) -> str:
    text = check_text(value, field=field, max_length=20)
    if not _LEI_PATTERN.fullmatch(text):
        raise ValueError(f"{field} {text!r} is not 18 letters or digits and 2 check digits")
    try:
        stdnum_lei.validate(text)
    except ValidationError as error:
        raise ValueError(f"{field} {text!r} is not a valid LEI ({error})") from None
    return text


def check_bic(value: object, *, field: str) -> str:
    text = check_text(value, field=field, max_length=11)
    try:
        canonical = str(stdnum_bic.validate(text))
    except ValidationError as error:
        raise ValueError(f"{field} {text!r} is not a valid BIC ({error})") from None
    if canonical != text:
        raise ValueError(f"{field} {text!r} is not in canonical form ({canonical!r})")
    return text


def check_currency(value: object, *, field: str = "currency") -> str:
    """The schema's ActiveCurrencyCode pattern; which codes are live currencies is the
    gateway's check (ISO 4217), made when the trade came in."""
    text = check_text(value, field=field, max_length=3)
    if not _CURRENCY_PATTERN.fullmatch(text):
        raise ValueError(f"{field} {text!r} is not three capital letters (ISO 4217)")
    return text


def check_date(value: object, *, field: str) -> date:
    # A datetime is a date too, but would render with its time, which ISODate refuses.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValueError(f"{field} must be a date, not {type(value).__name__}")
    return value


def format_decimal(
    value: object,
    *,
    field: str,
    total_digits: int,
    fraction_digits: int,
    positive: bool,
) -> str:
    """The xs:decimal text of value, refused (never rounded) if it has more digits than the
    schema's totalDigits or fractionDigits. positive: > 0 (quantities, whose direction is the
    movement); else >= 0 (amounts, whose direction is the credit/debit indicator)."""
    if not isinstance(value, Decimal):
        raise ValueError(f"{field} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{field} must be a finite number, got {value}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ValueError(f"{field} must be {bound}, got {value}")
    if value == 0:
        return "0"
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # only NaN and infinities have a letter here
        raise ValueError(f"{field} must be a finite number, got {value}")
    # Trailing zeros of the fraction are not significant (1.50 is 1.5).
    significant = list(digits)
    while exponent < 0 and significant[-1] == 0:
        significant.pop()
        exponent += 1
    fraction = max(-exponent, 0)
    # As in XSD: digits of the integer part (no leading zeros) plus those of the fraction.
    total = len(significant) + exponent if exponent >= 0 else max(len(significant), fraction)
    if fraction > fraction_digits:
        raise ValueError(
            f"{field} {value} has {fraction} decimal places; the schema allows at most "
            f"{fraction_digits}"
        )
    if total > total_digits:
        raise ValueError(
            f"{field} {value} has {total} digits; the schema allows at most {total_digits}"
        )
    return format(Decimal((0, tuple(significant), exponent)), "f")
