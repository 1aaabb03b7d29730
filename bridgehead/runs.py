"""Which run may carry internal state: pure rules over the fields of ``workflow.info()`` (kept
out of ``workflows/`` so the tests can plant the old rule and watch the attack succeed)."""

from __future__ import annotations


def continued_by_itself(
    continued_run_id: str | None, cron_schedule: str | None, attempt: int
) -> bool:
    """This run was continued as new by the previous run of the same workflow, so its input is
    state the workflow carried itself. Temporal also sets ``continued_run_id`` on a cron run and
    on a retry of a failed run, and both carry the *caller's* input again: a continued run is the
    first attempt of a run without cron."""
    return continued_run_id is not None and not cron_schedule and attempt == 1


def cron_refusal(cron_schedule: str | None) -> str | None:
    """Why a run started with a cron schedule is refused (None without one): every run after the
    first would carry the caller's input as if continued, and Bridgehead's periodic work runs from
    the Schedules it creates itself."""
    if not cron_schedule:
        return None
    return (
        f"started with a cron schedule ({cron_schedule!r}): Bridgehead's workflows are never run by "
        "cron; start it once without --cron (periodic work runs from the Schedules Bridgehead creates)"
    )
