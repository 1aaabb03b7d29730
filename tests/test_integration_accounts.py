"""Integration modules never onboard the same AWS account.

Each test process runs whole modules against one embedded stack (``make test``: pytest-xdist,
``--dist loadfile``), in an order that changes from run to run. One AWS account serves one
organisation, so two modules onboarding organisations in the same account pass or fail depending
on which of them the process ran first: the CI failure where test_guardrails' organisation stayed
REGISTERING because test_dropbox_events had registered account 292929292929 before it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Modules that onboard through the workflow (a registry row written directly claims no account).
ONBOARDS = re.compile(r"\b(onboard_ready|start_org|OnboardOrganization)\b")
ACCOUNT = re.compile(r'"(\d{12})"')
#: Accounts that stand for someone else's (a foreign trust principal, a role ARN of the wrong
#: account): refused before anything is registered, never onboarded.
FOREIGN = {"999999999999"}


def shared_accounts(sources: dict[str, str]) -> dict[str, list[str]]:
    """Account ids that more than one onboarding module names, with the modules."""
    uses: dict[str, set[str]] = defaultdict(set)
    for name, text in sources.items():
        if ONBOARDS.search(text):
            for account in set(ACCOUNT.findall(text)) - FOREIGN:
                uses[account].add(name)
    return {a: sorted(ms) for a, ms in uses.items() if len(ms) > 1}


def integration_sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((ROOT / "tests/integration").glob("*.py"))}


def test_no_two_integration_modules_onboard_the_same_account():
    sources = integration_sources()
    assert sum(bool(ONBOARDS.search(t)) for t in sources.values()) >= 10  # the scan sees them
    assert shared_accounts(sources) == {}


def test_twin_the_collision_of_the_ci_failure_is_caught():
    sources = integration_sources()
    sources["test_dropbox_events.py"] = sources["test_dropbox_events.py"].replace(
        "303030303030", "292929292929"
    )
    assert shared_accounts(sources) == {
        "292929292929": ["test_dropbox_events.py", "test_guardrails.py"]
    }
