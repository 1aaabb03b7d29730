"""The README's own CLI walk-through, run line by line against the embedded stack as a reader
would (issue #22: the front door must be true). Only the organisation and account are renamed (the
session's stack already has an `acme`), and `create-role`, which needs the reader's own keys, is
left out: the template path is the one walked."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def readme_cli_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index("With the project's CLI")
    block = text[
        text.index("```bash", start) + len("```bash") : text.index(
            "```", text.index("```bash", start) + 7
        )
    ]
    return [
        line.split("#", 1)[0].strip()
        for line in block.strip().splitlines()
        if line.startswith(".venv/bin/python -m starter")
    ]


def test_the_readme_walk_through_works(stack, tmp_path):
    lines = readme_cli_lines()
    assert len(lines) >= 10, lines
    (tmp_path / "cluster.json").write_text(
        json.dumps(
            {
                "head_instance_type": "t3.medium",
                "compute_instance_type": "c5.xlarge",
                "compute_initial_nodes": 2,
                "compute_max_nodes": 4,
            }
        )
    )
    env = {**os.environ, **stack.env()}
    ran = []
    for line in lines:
        line = (
            re.sub(r"\bacme\b", "walk", line)
            .replace("222222222222", "272727272727")
            .replace(" > role.json", "")
        )
        if " create-role " in line:
            continue
        argv = shlex.split(line)
        argv[0] = sys.executable
        r = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        ran.append((line, r.stdout))
    out = dict(ran)
    submit = next(v for k, v in out.items() if "submit-role" in k)
    assert "READY" in submit, submit
    deleted = next(v for k, v in out.items() if "cluster delete" in k)
    assert "DELETED" in deleted, deleted
    offboarded = next(v for k, v in out.items() if "offboard" in k)
    assert "OFFBOARDED" in offboarded, offboarded


def test_twin_a_readme_line_that_does_not_work_is_caught(stack, tmp_path):
    env = {**os.environ, **stack.env()}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "starter",
            "onboard",
            "submit-role",
            "--org",
            "nobody-here",
            "--role-arn",
            "arn:aws:iam::272727272727:role/BridgeheadAccess",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode != 0
