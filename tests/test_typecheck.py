"""The type checker runs with the tests (issue #22): mypy over the project's packages (files and
settings in pyproject.toml) reports no error; the twin plants a type error and sees it reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_the_project_type_checks():
    r = mypy()
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_twin_a_planted_type_error_is_reported(tmp_path):
    bad = tmp_path / "planted.py"
    bad.write_text(
        "from bridgehead import models as m\n\nm.ResizeInput(compute_nodes='two')\nx: int = m.ClusterState.RUNNING\n"
    )
    r = mypy(str(bad))
    assert r.returncode == 1 and "planted.py:4: error" in r.stdout, r.stdout
