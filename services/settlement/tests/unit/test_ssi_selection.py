"""SSI selection: the asset class of an ISIN and the version in force on a date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from settlement.domain import ssi_asset_class, version_in_force
from settlement.penalties import ASSET_CLASS_BY_ISIN_PREFIX


@dataclass(frozen=True)
class V:
    version: int
    effective_from: date


def test_asset_class_of_an_isin() -> None:
    assert ssi_asset_class("DE0001102580") == "bond"  # Bund
    assert ssi_asset_class("NL0010071189") == "bond"  # DSL
    assert ssi_asset_class("US0378331005") == "equity"
    assert ssi_asset_class("DE0007164600") == "equity"


@given(st.sampled_from(sorted(ASSET_CLASS_BY_ISIN_PREFIX)), st.text("0123456789", max_size=4))
def test_every_bond_prefix_is_a_bond(prefix: str, rest: str) -> None:
    assert ssi_asset_class(prefix + rest) == "bond"


def test_version_in_force() -> None:
    versions = [V(1, date(2020, 1, 1)), V(2, date(2026, 11, 27)), V(3, date(2026, 11, 27))]
    assert version_in_force(versions, date(2019, 12, 31)) is None
    assert version_in_force(versions, date(2026, 11, 26)) == versions[0]
    assert version_in_force(versions, date(2026, 11, 27)) == versions[2]
    assert version_in_force([], date(2026, 1, 1)) is None


@given(
    st.lists(st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 1, 1)), max_size=8),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 1, 1)),
)
def test_the_version_in_force_is_the_latest_started_one(starts: list[date], on: date) -> None:
    # Versions take effect in order (an update is never earlier than the one it follows).
    versions = [V(n, d) for n, d in enumerate(sorted(starts), start=1)]
    found = version_in_force(versions, on)
    started = [v for v in versions if v.effective_from <= on]
    if not started:
        assert found is None
    else:
        assert found == started[-1]
        assert all(v.effective_from > on for v in versions if v.version > found.version)
