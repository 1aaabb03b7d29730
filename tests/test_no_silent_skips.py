"""Twins of "no silent skips in CI": with ``CI`` set a missing tool fails the test; without it the
test skips and says why. Checked on the real gates (the browser test's Chromium/Playwright lookup,
the linter import) with the tool made absent, and on the CI script's skip audit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.requirements import missing, require_module

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("ci", ["1", ""], ids=["CI set", "developer machine"])
def test_missing_tool_fails_in_ci_and_skips_elsewhere(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected) as e:
        missing("no frobnicator")
    assert "no frobnicator" in str(e.value)
    with pytest.raises(expected) as e:
        require_module("bridgehead_no_such_linter", "it is in the dev extra")
    assert "bridgehead_no_such_linter" in str(e.value)


def test_present_module_is_returned(monkeypatch):
    monkeypatch.setenv("CI", "1")
    assert require_module("json", "stdlib").dumps([]) == "[]"


@pytest.mark.parametrize("absent", ["chromium", "playwright"])
def test_browser_test_fails_in_ci_without_chromium_or_playwright(monkeypatch, tmp_path, absent):
    import sys

    from tests.integration import test_web_ui

    monkeypatch.setenv("CI", "true")
    if absent == "chromium":
        monkeypatch.delenv("BRIDGEHEAD_CHROMIUM", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    else:
        fake = tmp_path / "chromium"
        fake.write_text("#!/bin/sh\n")
        fake.chmod(0o755)
        monkeypatch.setenv("BRIDGEHEAD_CHROMIUM", str(fake))
        monkeypatch.setitem(sys.modules, "playwright.async_api", None)  # import fails
    with pytest.raises(pytest.fail.Exception) as e:
        test_web_ui.chromium()
    assert absent in str(e.value).lower()


def _ci_audit(tmp_path: Path, log: str) -> int:
    """Run .ci/run's skip audit on a fabricated pytest log."""
    (tmp_path / "log").write_text(log)
    return subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--audit", str(tmp_path / "log")],
        capture_output=True,
        text=True,
    ).returncode


def test_ci_script_fails_a_run_with_an_unexpected_skip(tmp_path):
    ok = "SKIPPED [1] tests/integration/test_zz_record_histories.py:18: set BRIDGEHEAD_RECORD_HISTORIES=1 to refresh tests/histories\n"
    assert _ci_audit(tmp_path, ok + "120 passed, 1 skipped in 300.00s\n") == 0
    bad = "SKIPPED [1] tests/integration/test_web_ui.py:32: no Chromium on this machine\n"
    assert _ci_audit(tmp_path, ok + bad + "119 passed, 2 skipped in 300.00s\n") == 1
    assert _ci_audit(tmp_path, "1 failed, 119 passed in 300.00s\n") == 1
    assert _ci_audit(tmp_path, "no tests ran in 0.01s\n") == 1
