"""Business days from exchange_calendars (a maintained holiday calendar library)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import exchange_calendars
import pandas as pd


class ExchangeBusinessDays:
    def __init__(self, name: str) -> None:
        self._calendar = exchange_calendars.get_calendar(name)

    def add(self, start: date, business_days: int) -> date:
        session = self._calendar.date_to_session(pd.Timestamp(start), direction="previous")
        result = self._calendar.session_offset(session, business_days)
        return result.date()  # type: ignore[no-any-return]


@lru_cache(maxsize=16)
def business_days(name: str) -> ExchangeBusinessDays:
    return ExchangeBusinessDays(name)
