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

    def is_business_day(self, day: date) -> bool:
        """A session of the calendar (outside the calendar's bounds: a weekday)."""
        first, last = self._calendar.first_session.date(), self._calendar.last_session.date()
        if not first <= day <= last:
            return day.weekday() < 5
        return bool(self._calendar.is_session(pd.Timestamp(day)))


@lru_cache(maxsize=16)
def business_days(name: str) -> ExchangeBusinessDays:
    return ExchangeBusinessDays(name)


def load_all(names: list[str]) -> None:
    """Build the calendars before the service takes events: each takes some 0.2-0.4 s (more
    on a loaded machine), which would otherwise fall on the first trade of each market."""
    for name in names:
        business_days(name)
