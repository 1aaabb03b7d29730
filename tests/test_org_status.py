"""``starter status org-…`` after an unsuccessful latest run (``starter/org_status.py``): the
registry's record with the run's failure, never the failed run's ``REGISTERING`` placeholder.

Fakes stand in for the Temporal handle and the registry; the real path (a re-onboarding refused
after offboarding, on the embedded stack) is ``tests/integration/test_org_status.py``. Twin: the
status a starter without this reading would print (the failed run's own) is rejected by the same
check, with each wrong field named.
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from bridgehead import models as m
from starter import org_status

REFUSAL = (
    "organisation id 'acme' is already registered (account 222222222222); choose another org_id"
)


class FailedRun:
    id = "org-acme"
    run_id = "run-2"

    async def result(self, follow_runs: bool = True) -> None:
        assert follow_runs is False
        activity = ActivityError(
            "Activity task failed",
            scheduled_event_id=5,
            started_event_id=6,
            identity="worker",
            activity_type="register_organization",
            activity_id="1",
            retry_state=RetryState.NON_RETRYABLE_FAILURE,
        )
        activity.__cause__ = ApplicationError(REFUSAL, type="CustomerActionRequired")
        raise WorkflowFailureError(cause=activity)


def failed_run_status() -> m.OrgStatus:
    """What the failed run's ``status`` query answers: the placeholder before registration."""
    return m.OrgStatus(
        org_id="acme",
        state=m.OrgState.REGISTERING,
        external_id=None,
        role_arn=None,
        artifacts=None,
        failed_checks=[],
        regions={},
        last_error=None,
        steps=[],
    )


def registry_record(org_id: str, last_error: str) -> m.OrgStatus:
    return m.OrgStatus(
        org_id=org_id,
        state=m.OrgState.OFFBOARDED,
        external_id="bh-ext-1",
        role_arn=None,
        artifacts=None,
        failed_checks=[],
        regions={"us-east-1": m.RegionProgress(images="REVOKED", foundation="DELETED")},
        last_error=last_error,
        steps=[],
    )


def problems(s: m.OrgStatus) -> list[str]:
    """What is wrong with a status shown for ``acme`` after its refused re-onboarding."""
    found = []
    if s.state != m.OrgState.OFFBOARDED:
        found.append(f"state {s.state.value}, not the registry's OFFBOARDED")
    if s.external_id != "bh-ext-1":
        found.append(f"external id {s.external_id}, not the registered one")
    if REFUSAL not in (s.last_error or ""):
        found.append("the refusal reason is not shown")
    return found


async def test_a_failed_latest_run_shows_the_registry_record_and_the_refusal(monkeypatch):
    monkeypatch.setattr(org_status, "registry_status", registry_record)
    s = await org_status.org_status(FailedRun(), "FAILED", failed_run_status())
    assert problems(s) == []
    assert s.last_error == (
        f"the latest run (run-2) failed: {REFUSAL}; shown: the registry's record"
    )
    assert s.regions == {"us-east-1": m.RegionProgress(images="REVOKED", foundation="DELETED")}


def test_twin_the_failed_runs_own_status_is_rejected():
    assert problems(failed_run_status()) == [
        "state REGISTERING, not the registry's OFFBOARDED",
        "external id None, not the registered one",
        "the refusal reason is not shown",
    ]


@pytest.mark.parametrize("status", ["RUNNING", "COMPLETED", "CONTINUED_AS_NEW"])
async def test_a_running_or_completed_run_is_shown_as_it_answers(monkeypatch, status):
    def unread(*_args: object) -> None:
        raise AssertionError("the registry must not be read for a successful run")

    monkeypatch.setattr(org_status, "registry_status", unread)
    queried = failed_run_status()
    assert await org_status.org_status(FailedRun(), status, queried) is queried


async def test_without_a_registry_record_the_run_is_shown_failed_with_its_reason(monkeypatch):
    monkeypatch.setattr(org_status, "registry_status", lambda org, said: None)
    s = await org_status.org_status(FailedRun(), "FAILED", failed_run_status())
    assert (s.state, s.external_id) == (m.OrgState.FAILED, None)
    assert s.last_error == f"the latest run (run-2) failed: {REFUSAL}"


async def test_an_unreadable_registry_still_shows_the_failure(monkeypatch):
    def unreadable(org: str, said: str) -> None:
        raise RuntimeError("no credentials")

    monkeypatch.setattr(org_status, "registry_status", unreadable)
    s = await org_status.org_status(FailedRun(), "TERMINATED", failed_run_status())
    assert s.state == m.OrgState.FAILED
    assert s.last_error == (
        f"the latest run (run-2) terminated: {REFUSAL} "
        "(the registry could not be read: no credentials)"
    )


async def test_the_organisation_is_the_one_the_workflow_id_names(monkeypatch):
    seen = []
    monkeypatch.setattr(org_status, "registry_status", lambda org, said: seen.append(org))
    other = failed_run_status().model_copy(update={"org_id": "-"})
    await org_status.org_status(FailedRun(), "FAILED", other)
    assert seen == ["acme"]


async def test_waiting_for_an_organisation_whose_run_failed_ends_at_once(monkeypatch):
    from starter import client
    from starter.output import CliError

    failed = failed_run_status().model_copy(
        update={
            "state": m.OrgState.FAILED,
            "last_error": f"the latest run (run-2) failed: {REFUSAL}",
        }
    )
    asked = []

    async def query(wf_id: str, wf_type: str | None = None) -> m.OrgStatus:
        asked.append(wf_id)
        return failed

    monkeypatch.setattr(client, "query", query)
    with pytest.raises(CliError) as e:
        await client.wait_state("org-acme", "OnboardOrganization", {"AWAITING_ROLE"}, 60)
    assert str(e.value) == f"org-acme: the latest run (run-2) failed: {REFUSAL}"
    assert asked == ["org-acme"]


class Described:
    def __init__(self, status: str) -> None:
        from temporalio.client import WorkflowExecutionStatus

        self.status = WorkflowExecutionStatus[status]


@pytest.mark.parametrize("status", ["FAILED", "TERMINATED", "RUNNING", "COMPLETED"])
async def test_the_integration_wait_stops_at_a_run_that_ended_unsuccessfully(status):
    """``tests/integration/helpers.ended_with`` (what ``wait_for`` fails with at once) reads the
    same outcomes and reason as ``status`` does here; a running or completed run is waited on."""
    from tests.integration.helpers import ended_with

    class Run(FailedRun):
        async def describe(self) -> Described:
            return Described(status)

    said = await ended_with(Run())
    if status in org_status.UNSUCCESSFUL:
        assert said == f"{status}: {REFUSAL}"
    else:
        assert said is None
