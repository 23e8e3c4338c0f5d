"""What an evaluation reads besides the trade and the projection: the rule versions, the
restricted and watch list entries and the counterparty names, cached per process.

Officers' changes are in force from `IN_FORCE_DELAY` after they are made (casework sets
`effective_from`, `added_at`, `removed_at` so). A change therefore commits well before any
event it applies to can happen, and the cache, which checks the tables for changes at most
every `CHECK_INTERVAL_S`, always holds it by the time such an event is evaluated: every
replica evaluates an event with the same rules and lists, now or in a replay."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from compliance_monitor import domain_rules
from compliance_monitor.tables import CounterpartyRow, ListEntryRow, RuleVersionRow

IN_FORCE_DELAY = timedelta(seconds=2)
CHECK_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Entry:
    value: str
    reason: str
    added_at: datetime
    removed_at: datetime | None

    def live(self, at: datetime) -> bool:
        return self.added_at <= at and (self.removed_at is None or self.removed_at > at)


@dataclass
class ReferenceData:
    rules: list[domain_rules.RuleVersion] = field(default_factory=list)
    # list -> value -> its entries over time (restricted and watch_lei: looked up by value).
    by_value: dict[str, dict[str, list[Entry]]] = field(default_factory=dict)
    watched_names: list[Entry] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    # The latest time any entry starts or ends: after it, the live names are `current`.
    last_change: datetime | None = None
    current_names: list[domain_rules.ListEntry] = field(default_factory=list)

    def rules_at(self, at: datetime) -> list[domain_rules.RuleVersion]:
        return domain_rules.in_force(self.rules, at)

    def reason(self, list_: str, value: str, at: datetime) -> str | None:
        for entry in self.by_value.get(list_, {}).get(value, ()):
            if entry.live(at):
                return entry.reason
        return None

    def names_at(self, at: datetime) -> Sequence[domain_rules.ListEntry]:
        if self.last_change is None or at >= self.last_change:
            return self.current_names
        return [domain_rules.ListEntry(e.value, e.reason) for e in self.watched_names if e.live(at)]


def _build(
    rules: list[domain_rules.RuleVersion], entries: list[ListEntryRow], names: dict[str, str]
) -> ReferenceData:
    data = ReferenceData(rules=rules, names=names)
    changes: list[datetime] = []
    for row in entries:
        entry = Entry(row.value, row.reason, row.added_at, row.removed_at)
        changes += [row.added_at] + ([row.removed_at] if row.removed_at is not None else [])
        if row.list == "watch_name":
            data.watched_names.append(entry)
        else:
            data.by_value.setdefault(row.list, {}).setdefault(row.value, []).append(entry)
    data.last_change = max(changes) if changes else None
    data.current_names = [
        domain_rules.ListEntry(e.value, e.reason)
        for e in data.watched_names
        if e.removed_at is None
    ]
    return data


class ReferenceCache:
    def __init__(self) -> None:
        self._data: ReferenceData | None = None
        self._stamp: tuple[object, ...] | None = None
        self._checked = 0.0
        self._parsed: dict[tuple[str, int], domain_rules.RuleVersion] = {}

    async def get(self, session: AsyncSession) -> ReferenceData:
        now = time.monotonic()
        if self._data is not None and now - self._checked < CHECK_INTERVAL_S:
            return self._data
        # Versions and entries are only ever added, an entry's removal set once, a name
        # replaced with a new updated_at: these counts and times change with any change.
        stamp = tuple(
            (
                await session.execute(
                    sa.select(
                        sa.select(sa.func.count()).select_from(RuleVersionRow).scalar_subquery(),
                        sa.select(sa.func.count()).select_from(ListEntryRow).scalar_subquery(),
                        sa.select(sa.func.count(ListEntryRow.removed_at)).scalar_subquery(),
                        sa.select(sa.func.count()).select_from(CounterpartyRow).scalar_subquery(),
                        sa.select(sa.func.max(CounterpartyRow.updated_at)).scalar_subquery(),
                    )
                )
            ).one()
        )
        if self._data is None or stamp != self._stamp:
            self._data = await self._load(session)
            self._stamp = stamp
        self._checked = now
        return self._data

    async def _load(self, session: AsyncSession) -> ReferenceData:
        rules = [
            self._rule(row) for row in (await session.execute(sa.select(RuleVersionRow))).scalars()
        ]
        entries = list((await session.execute(sa.select(ListEntryRow))).scalars())
        names = {
            lei: name
            for lei, name in await session.execute(
                sa.select(CounterpartyRow.lei, CounterpartyRow.name)
            )
        }
        return _build(rules, entries, names)

    def _rule(self, row: RuleVersionRow) -> domain_rules.RuleVersion:
        key = (row.name, row.version)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = domain_rules.RuleVersion(
                name=row.name,
                version=row.version,
                kind=row.kind,
                enabled=row.enabled,
                action=row.action,  # type: ignore[arg-type]
                severity=row.severity,  # type: ignore[arg-type]
                parameters=domain_rules.parse_parameters(row.kind, row.parameters),
                effective_from=row.effective_from,
            )
            self._parsed[key] = parsed
        return parsed
