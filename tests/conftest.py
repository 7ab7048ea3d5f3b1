"""Shared pytest setup: in CI a missing service fails the run; a test never skips there.
At the end, the fault report (tests/faults.py) is printed and saved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import faults


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not faults.has_rows():
        return
    text = faults.table()
    terminalreporter.section("fault report (faults and bad input tried, invariant violations)")
    terminalreporter.write(text)
    out = Path(config.rootpath) / ".pytest_cache" / "fault-report.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    target = os.environ.get("ATOMICDEPLOY_FAULT_REPORT")
    if target:
        faults.write_into(Path(config.rootpath) / target, text)
