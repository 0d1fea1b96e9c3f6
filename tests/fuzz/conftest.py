"""Prints how many inputs each fuzz target tried (tests/fuzz/fuzzing.py counts them)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fuzzing import COUNTS, LONG, PEAKS, SCALE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    profile = f"long (x{SCALE})" if LONG else "ci"
    terminalreporter.section(f"fuzz: inputs tried per target, profile {profile}")
    terminalreporter.write_line(f"{'target':40} {'inputs':>10} {'peak KiB':>10}")
    for target, count in sorted(COUNTS.items()):
        peak = f"{PEAKS[target] // 1024:>10}" if target in PEAKS else ""
        terminalreporter.write_line(f"{target:40} {count:>10} {peak}")
    total = sum(n for target, n in COUNTS.items() if " (" not in target)  # not the breakdowns
    terminalreporter.write_line(f"{'total':40} {total:>10}")
    _write_counts()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _write_counts()  # after each test too: a long run stopped early keeps its counts


def _write_counts() -> None:
    out = os.environ.get("KPY_FUZZ_COUNTS")
    if out:  # the long run's record, for the note
        record = {"inputs": dict(sorted(COUNTS.items())), "peak_bytes": dict(sorted(PEAKS.items()))}
        Path(out).write_text(json.dumps(record, indent=1) + "\n")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long profile runs each target for as long as its examples take: no per-test timeout
    (pyproject's is for the normal run)."""
    if LONG:
        here = Path(__file__).parent
        for item in items:
            if here in item.path.parents:
                item.add_marker(pytest.mark.timeout(0))
