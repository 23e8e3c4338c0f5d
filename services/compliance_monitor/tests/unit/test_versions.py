"""Trade versions: each version is evaluated once, newer versions supersede holds, a
cancellation ends them. Pure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance_monitor.domain import (
    CANCELLED_REASON,
    Change,
    ComplianceError,
    Decision,
    HoldClosed,
    TradeState,
    alert_id,
    on_cancel,
    on_version,
    why_ignored,
)
from compliance_monitor.domain_rules import Outcome

PASS = [
    Outcome("notional-limit", 1, True, False, "high", "within"),
    Outcome("restricted-list", 1, True, False, "critical", "no"),
]
BREACH = [
    Outcome("notional-limit", 1, False, True, "high", "exceeds"),
    Outcome("restricted-list", 1, True, False, "critical", "no"),
]
# A breach of a rule that only alerts: decided, alerted, not held.
ALERT_ONLY = [
    Outcome("large-trade", 1, False, False, "medium", "exceeds"),
    Outcome("restricted-list", 1, True, False, "critical", "no"),
]

CAPTURED_CLEARED = TradeState(version=1)
CAPTURED_HELD = TradeState(version=1, open_hold=1)


def test_the_captured_version_is_decided_and_a_breach_opens_a_hold_for_it() -> None:
    change = on_version(TradeState(), 1, BREACH)

    assert change.decision == Decision(1, tuple(BREACH))
    assert change.decision.held
    assert change.decision.breaches == (BREACH[0],)
    assert change.hold_opened == 1
    assert change.hold_closed is None
    assert change.state == CAPTURED_HELD


def test_a_cleared_version_opens_no_hold() -> None:
    change = on_version(TradeState(), 1, PASS)

    assert change.decision is not None and not change.decision.held
    assert change.decision.breaches == ()
    assert change.hold_opened is None
    assert change.state == CAPTURED_CLEARED


def test_a_breach_of_a_rule_that_only_alerts_raises_an_alert_and_holds_nothing() -> None:
    change = on_version(TradeState(), 1, ALERT_ONLY)

    assert change.decision is not None and not change.decision.held
    assert change.decision.breaches == (ALERT_ONLY[0],)
    assert change.decision.blocking_rules == []
    assert change.hold_opened is None


def test_an_amendment_that_breaches_a_rule_holds_the_new_version() -> None:
    change = on_version(CAPTURED_CLEARED, 2, BREACH)

    assert change.decision == Decision(2, tuple(BREACH))
    assert change.hold_opened == 2
    assert change.hold_closed is None
    assert change.state == TradeState(version=2, open_hold=2)


def test_an_amendment_that_passes_supersedes_the_hold_of_the_older_version() -> None:
    change = on_version(TradeState(version=2, open_hold=2), 3, PASS)

    assert change.decision == Decision(3, tuple(PASS))
    assert change.hold_closed == HoldClosed(2, "superseded by amendment 3")
    assert change.hold_opened is None
    assert change.state == TradeState(version=3)


def test_an_amendment_that_breaches_again_moves_the_hold_to_the_new_version() -> None:
    change = on_version(CAPTURED_HELD, 2, BREACH)

    assert change.hold_closed == HoldClosed(1, "superseded by amendment 2")
    assert change.hold_opened == 2
    assert change.state == TradeState(version=2, open_hold=2)


@pytest.mark.parametrize("version", [1, 2])
def test_a_version_not_after_the_latest_evaluated_changes_nothing(version: int) -> None:
    state = TradeState(version=2, open_hold=2)

    change = on_version(state, version, PASS)

    assert change == Change(state, ignored=change.ignored)
    assert change.ignored is not None and "already evaluated" in change.ignored
    assert why_ignored(state, version) == change.ignored


def test_an_amendment_that_arrives_before_the_capture_is_evaluated_and_the_capture_is_not() -> None:
    amended = on_version(TradeState(), 2, BREACH)
    captured = on_version(amended.state, 1, PASS)

    assert amended.decision is not None and amended.decision.version == 2
    assert captured.decision is None
    assert captured.state == amended.state


def test_a_skipped_version_does_not_stop_the_next_one() -> None:
    change = on_version(CAPTURED_HELD, 4, PASS)

    assert change.decision is not None and change.decision.version == 4
    assert change.hold_closed == HoldClosed(1, "superseded by amendment 4")


@pytest.mark.parametrize("version", [0, -1])
def test_a_version_before_1_is_refused(version: int) -> None:
    with pytest.raises(ComplianceError, match="starts at 1"):
        on_version(TradeState(), version, PASS)


def test_a_cancellation_closes_the_open_hold_and_decides_nothing() -> None:
    change = on_cancel(TradeState(version=2, open_hold=2))

    assert change.hold_closed == HoldClosed(2, CANCELLED_REASON)
    assert CANCELLED_REASON == "trade cancelled"
    assert change.decision is None
    assert change.hold_opened is None
    assert change.state == TradeState(version=2, cancelled=True)


def test_a_cancellation_of_a_trade_without_a_hold_closes_nothing() -> None:
    change = on_cancel(CAPTURED_CLEARED)

    assert change.hold_closed is None
    assert change.ignored is None
    assert change.state == TradeState(version=1, cancelled=True)


def test_a_cancellation_before_any_version_still_ends_the_trade() -> None:
    cancelled = on_cancel(TradeState()).state

    assert on_version(cancelled, 1, BREACH).decision is None


def test_a_second_cancellation_changes_nothing() -> None:
    cancelled = TradeState(version=1, cancelled=True)

    change = on_cancel(cancelled)

    assert change.state == cancelled
    assert change.hold_closed is None
    assert change.ignored == "the trade is already cancelled"


def test_an_amendment_after_the_cancellation_is_ignored() -> None:
    cancelled = TradeState(version=1, cancelled=True)

    change = on_version(cancelled, 2, BREACH)

    assert change.decision is None
    assert change.hold_opened is None
    assert change.state == cancelled
    assert change.ignored is not None and "cancellation" in change.ignored


def test_the_alert_of_version_1_keeps_the_id_alerts_had_before_versions() -> None:
    legacy = str(uuid.uuid5(uuid.NAMESPACE_URL, "alert:T-1:notional-limit"))

    assert alert_id("T-1", 1, "notional-limit") == legacy


def test_each_version_and_rule_has_its_own_alert_and_the_same_one_each_time() -> None:
    ids = {
        alert_id("T-1", version, rule)
        for version in (1, 2, 3)
        for rule in ("notional-limit", "restricted-list")
    }

    assert len(ids) == 6
    assert alert_id("T-1", 2, "notional-limit") == alert_id("T-1", 2, "notional-limit")
    assert alert_id("T-1", 2, "notional-limit") != alert_id("T-2", 2, "notional-limit")


# -- any sequence of events -------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    version: int
    breach: bool


@dataclass(frozen=True)
class Cancel:
    pass


Event = Version | Cancel

events = st.lists(
    st.one_of(
        st.builds(Version, st.integers(min_value=1, max_value=8), st.booleans()),
        st.just(Cancel()),
    ),
    max_size=25,
)


@dataclass
class Store:
    """What the handlers would keep: the decisions published and the holds."""

    state: TradeState
    decisions: list[Decision]
    open_holds: set[int]
    closed_holds: dict[int, str]


def apply(event: Event, store: Store) -> Change:
    if isinstance(event, Cancel):
        change = on_cancel(store.state)
    else:
        change = on_version(store.state, event.version, BREACH if event.breach else PASS)
    if change.hold_closed is not None:
        assert change.hold_closed.version in store.open_holds, "closes only an open hold"
        store.open_holds.remove(change.hold_closed.version)
        store.closed_holds[change.hold_closed.version] = change.hold_closed.reason
    if change.hold_opened is not None:
        assert change.hold_opened not in store.open_holds | set(store.closed_holds)
        store.open_holds.add(change.hold_opened)
    if change.decision is not None:
        store.decisions.append(change.decision)
    store.state = change.state
    return change


def run(sequence: list[Event]) -> Store:
    store = Store(TradeState(), [], set(), {})
    for event in sequence:
        apply(event, store)
    return store


@given(events)
def test_at_most_one_hold_is_open_and_it_is_of_the_latest_version(sequence: list[Event]) -> None:
    store = Store(TradeState(), [], set(), {})
    for event in sequence:
        before = store.state
        change = apply(event, store)
        assert store.state.version >= before.version
        assert change.ignored is None or change.state == before
        assert (change.decision is None) or (change.ignored is None)
        assert store.open_holds == (
            {store.state.open_hold} if store.state.open_hold is not None else set()
        )
        if store.state.open_hold is not None:
            assert store.state.open_hold == store.state.version
            assert not store.state.cancelled
        if store.state.cancelled:
            assert change.decision is None
            assert not store.open_holds


@given(events)
def test_decisions_are_for_ever_newer_versions_up_to_the_cancellation(
    sequence: list[Event],
) -> None:
    store = run(sequence)

    before_cancel = sequence[: sequence.index(Cancel())] if Cancel() in sequence else sequence
    newest = 0
    expected = []
    for event in before_cancel:
        assert isinstance(event, Version)
        if event.version > newest:
            newest = event.version
            expected.append((event.version, event.breach))
    assert [(d.version, d.held) for d in store.decisions] == expected
    # A hold is closed by a newer version or by the cancellation, with the reason why.
    for version, reason in store.closed_holds.items():
        assert reason == CANCELLED_REASON or (
            reason.startswith("superseded by amendment ")
            and int(reason.rsplit(" ", 1)[1]) > version
        )


@given(events, st.data())
def test_a_redelivered_or_replayed_event_changes_nothing(
    sequence: list[Event], data: st.DataObject
) -> None:
    if not sequence:
        return
    original = data.draw(st.integers(min_value=0, max_value=len(sequence) - 1))
    again_at = data.draw(st.integers(min_value=original + 1, max_value=len(sequence)))
    with_copy = [*sequence[:again_at], sequence[original], *sequence[again_at:]]

    once, twice = run(sequence), run(with_copy)

    assert twice.state == once.state
    assert twice.decisions == once.decisions
    assert twice.open_holds == once.open_holds
    assert twice.closed_holds == once.closed_holds
