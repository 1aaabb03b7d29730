"""Temporal actions per cluster-hour of a RUNNING cluster, worst case (one cluster per
organisation), measured from real histories on the time-skipping server
(tests/support/cluster_costs.py); the figures are those of docs/benchmarks.md."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.cluster_costs import measure_all, measure_dropbox_request, per_cluster_hour

GOAL = 4.0


def own_share(c: dict[str, float]) -> float:
    """What one organisation's own workflows cost per cluster-hour (the platform-wide drop-box
    watch aside)."""
    return c["cluster (RUNNING)"] + c["billing meter"] + c["re-verification"]


async def test_one_cluster_per_org_costs_at_most_4_actions_per_cluster_hour_of_its_own(ts_env):
    r = await measure_all(ts_env, hours=24)
    assert r.running_cluster_actions_per_hour == 0  # RUNNING waits on a condition, no timer
    assert r.running_cluster_events_per_hour == 0
    # 24 ticks of 1 timer + 2 activities, the run's upsert and the next tick's timer, over 24 h;
    # plus a start per TICKS_PER_RUN (100) ticks.
    assert r.meter_actions_per_hour == pytest.approx(74 / 24 + 1 / 100)
    assert r.reverify_actions_per_run == 8 and r.reverify_every_hours == 24
    assert r.dropbox_actions_per_run == 3 and r.dropbox_every_seconds == 30
    assert r.dropbox_safety_net_seconds == 6 * 3600
    worst = per_cluster_hour(r, clusters_per_org=1, orgs=1)
    assert own_share(worst) == pytest.approx(3.43, abs=0.005)
    assert own_share(worst) <= GOAL
    # The platform-wide drop-box Schedule, with the inbox's S3 events set up, is a safety net every
    # 6 hours: 0.5 actions an hour shared by every cluster (docs/benchmarks.md), so even a platform
    # of one organisation with one cluster stays under the goal. At 10 minutes it would not.
    assert worst["drop-box watch"] == 0.5
    assert worst["actions"] == pytest.approx(3.93, abs=0.005)
    assert worst["actions"] <= GOAL
    ten_minutes = dataclasses.replace(r, dropbox_safety_net_seconds=600)
    assert per_cluster_hour(ten_minutes, clusters_per_org=1, orgs=1)["drop-box watch"] == 18
    assert per_cluster_hour(ten_minutes, clusters_per_org=1, orgs=31)["actions"] > GOAL
    assert per_cluster_hour(ten_minutes, clusters_per_org=1, orgs=32)["actions"] <= GOAL
    # Without the events, the 30 s poll: 360 an hour, under the goal only from 628 organisations.
    polling = per_cluster_hour(r, clusters_per_org=1, orgs=1, events=False)
    assert polling["drop-box watch"] == 360
    assert per_cluster_hour(r, 1, 627, events=False)["actions"] > GOAL
    assert per_cluster_hour(r, 1, 628, events=False)["actions"] <= GOAL
    assert per_cluster_hour(r, clusters_per_org=10, orgs=1)["billing meter"] == pytest.approx(
        r.meter_actions_per_hour / 10
    )


async def test_twin_a_retried_tick_breaks_the_bound(ts_env):
    """Planted defect: every tick's close fails once before it succeeds. The count sees the retry
    (attempts, not scheduled activities), so the per-organisation share passes the goal."""
    r = await measure_all(ts_env, hours=24, failures_per_tick=1)
    assert r.meter_actions_per_hour == pytest.approx(98 / 24 + 1 / 100)
    assert own_share(per_cluster_hour(r, clusters_per_org=1, orgs=1)) > GOAL


async def test_a_dropbox_request_costs_its_own_run_whoever_starts_it(ts_env):
    """What a request adds on top of the hourly figures, as the event consumer starts it (the
    Schedule's scan would start the same run: a child's start is counted in its own history)."""
    rejected = await measure_dropbox_request(ts_env, "rejected")
    assert (rejected.starts, sum(rejected.activities.values()), rejected.upserts) == (1, 2, 0)
    created = await measure_dropbox_request(ts_env, "created")
    assert (created.starts, sum(created.activities.values()), created.upserts) == (1, 4, 1)
    assert (rejected.total, created.total) == (3, 6)
