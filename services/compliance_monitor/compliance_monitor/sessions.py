"""Trading sessions of venues from exchange_calendars: a venue's own calendar when the
library has one for its MIC, else its operating MIC's (a segment such as XNGS trades in its
operator's XNAS sessions, per the ISO 10383 register)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import exchange_calendars
import iso10383
import pandas as pd

_CALENDARS = frozenset(exchange_calendars.get_calendar_names(include_aliases=True))


@lru_cache(maxsize=256)
def calendar_name(venue: str) -> str | None:
    mic = venue.upper()
    if mic in _CALENDARS:
        return mic
    member = iso10383.MIC.__members__.get(mic.lower())
    operating = member.value.operating_mic if member is not None else None
    if operating is not None and operating.mic in _CALENDARS:
        return str(operating.mic)
    return None


@lru_cache(maxsize=32)
def _calendar(name: str) -> exchange_calendars.ExchangeCalendar:
    return exchange_calendars.get_calendar(name)


class ExchangeSessions:
    """`domain_rules.Sessions` from exchange_calendars (regular sessions, holidays, early
    closes); answers are cached by venue and minute, as trades cluster in time."""

    def is_open(self, venue: str, at: datetime) -> bool | None:
        name = calendar_name(venue)
        if name is None:
            return None
        minute = at.replace(second=0, microsecond=0)
        return _is_open(name, minute)


@lru_cache(maxsize=65_536)
def _is_open(name: str, minute: datetime) -> bool | None:
    """Open at this minute: within a session's open (included) and close (excluded),
    outside its lunch break. Read from the calendar's session table: the minute-level API
    (`is_open_on_minute`, `first_minute`) builds an array of every minute of the calendar's
    twenty years on first use, which takes seconds and stalled the first evaluations."""
    calendar = _calendar(name)
    stamp = pd.Timestamp(minute)
    session = pd.Timestamp(stamp.tz_convert(calendar.tz).date())
    if not calendar.first_session <= session <= calendar.last_session:
        return None  # outside the calendar's range: unknown, not closed
    if not calendar.is_session(session):
        return False
    if not calendar.session_open(session) <= stamp < calendar.session_close(session):
        return False
    if calendar.session_has_break(session):
        return not (
            calendar.session_break_start(session) <= stamp < calendar.session_break_end(session)
        )
    return True
