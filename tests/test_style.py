"""The layout is ruff's (issue #22): `ruff check` and `ruff format --check` pass over the tree, and
no `# fmt: skip` hides a line from the formatter; the twin shows a badly laid-out file is caught."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUFF = [sys.executable, "-m", "ruff"]


def test_ruff_check_and_format_pass_and_nothing_is_skipped():
    check = subprocess.run([*RUFF, "check", "."], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout[-3000:]
    fmt = subprocess.run(
        [*RUFF, "format", "--check", "."], capture_output=True, text=True, cwd=ROOT
    )
    assert fmt.returncode == 0, fmt.stdout[-3000:]
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], capture_output=True, text=True, cwd=ROOT
    ).stdout.split()
    skipped = [
        f for f in tracked if "fmt: skip" in (ROOT / f).read_text() and f != "tests/test_style.py"
    ]
    assert skipped == []


def test_twin_a_badly_laid_out_file_is_caught(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("x = {  'a':1,'b' :2 }\n")
    r = subprocess.run([*RUFF, "format", "--check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "bad.py" in r.stdout
