"""The bench's own arithmetic, without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from bo_tools.bench import percentile, stolen_pct


def test_stolen_share_is_steal_over_all_cpu_time_between_readings() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    before = [100, 0, 50, 800, 0, 0, 10, 40, 0, 0]
    after = [400, 0, 150, 1100, 0, 0, 30, 120, 0, 0]
    # spent: 300 + 100 + 300 + 20 + 80 (steal) = 800; guest time is already in user
    assert stolen_pct(before, after) == pytest.approx(10.0)


def test_stolen_share_is_unknown_without_readings() -> None:
    assert stolen_pct([], [1, 2, 3, 4, 5, 6, 7, 8]) is None
    assert stolen_pct([0] * 8, [0] * 8) is None


def test_percentile_of_a_hundred_values() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50, abs=1)
    assert percentile(values, 0.99) == pytest.approx(99, abs=1)


def test_a_series_line_per_run_names_the_largest_cpu_users_after_the_api() -> None:
    from bo_tools.bench import series_lines

    run = {
        "latency_ms": {"p50": 4.2, "p99": 18.75, "max": 31.0},
        "client_late_ms": {"p99": 5.0},
        "errors": 0,
        "host_stolen_pct": None,
        "cpu_ms_per_trade": {
            "total": 20.0,
            "settlement": 4.5,
            "postgres": 3.5,
            "gateway": 2.25,
            "audit": 2.0,
            "ledger": 1.5,
        },
    }
    header, line = series_lines([run])
    assert header.split()[:3] == ["run", "p50", "ms"]
    assert line.split()[:9] == ["1", "4.2", "18.8", "31.0", "5.0", "0", "n/a", "2.25", "20.00"]
    assert line.endswith("settlement 4.50, postgres 3.50, audit 2.00")


def test_the_figures_say_whether_the_intake_ran_in_its_cpu_group(tmp_path: Path) -> None:
    from bo_tools.bench import intake_group_figures
    from bo_tools.cpu_group import CpuGroup, Hierarchy
    from bo_tools.stack import Stack, isolated_config

    stack = Stack(isolated_config("figures"))
    assert intake_group_figures(stack) is None
    stack.intake_group = CpuGroup(
        tmp_path / "bo-intake-1.2-1-bo_bench", Hierarchy(tmp_path, "/", 1, "/")
    )
    stack.intake_sessions = {11, 12, 13}
    assert intake_group_figures(stack) == {
        "path": str(tmp_path / "bo-intake-1.2-1-bo_bench"),
        "database_sessions": 3,
    }
