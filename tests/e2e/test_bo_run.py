"""`bo run` (what `make run` starts) comes up, and stops everything it started even when
interrupted twice: a second Ctrl-C, or the INT a terminal or `timeout` sends the whole
process group, while it is stopping. Before, the second one broke the stop off and left
the services and the broker running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bo_tools.stack import ROOT

pytestmark = pytest.mark.slow

BO = Path(sys.executable).with_name("bo")


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in:\n{path.read_text(errors='replace')[-3000:]}")


def test_bo_run_stops_everything_it_started_when_interrupted_twice(tmp_path: Path) -> None:
    output = tmp_path / "run.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [str(BO), "run", "--isolated", "bo_run_test"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    try:
        _wait_for(output, "Ready.", process, timeout=240)
        started = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(" ".join(child.cmdline()) for child in started)
        assert "tansu" in names and "-m gateway" in names and "reconcile" in names, names
        # Ctrl-C, then another while it stops.
        os.killpg(process.pid, signal.SIGINT)
        _wait_for(output, "stopping", process, timeout=30)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=180) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "stopped" in output.read_text()
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [" ".join(p.cmdline()) for p in alive]


@pytest.mark.parametrize("name", ['x"; DROP DATABASE postgres; --', "Upper", "1st", "a" * 41, ""])
def test_bo_run_refuses_a_stack_name_that_is_not_a_database_name(name: str) -> None:
    result = subprocess.run(
        [str(BO), "run", "--isolated", name], cwd=ROOT, capture_output=True, timeout=60
    )
    assert result.returncode == 2
    assert b"--isolated" in result.stderr and b"lower-case letters" in result.stderr
