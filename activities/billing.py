"""Billing activities: the ledger written exactly once per (cluster, period), corrections, the
report; AWS Marketplace metering lives in :mod:`activities.metering` (a base class)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws, OrgRecord
from activities.billing_report import billing_report, ledger_entries
from activities.budget import closed_month_budget
from activities.errors import aws_errors
from activities.ledger import Ledger
from activities.metering import MeteringActivities
from activities.registry import Registry
from bridgehead import billing, ids, metrics
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    BillingReport,
    BillingReportInput,
    CloseBillingPeriodsInput,
    CloseBillingPeriodsResult,
    CorrectResult,
    OrgState,
    RecordCorrectionInput,
    UsageSegment,
)

log = get_logger("bridgehead.activities.billing")

__all__ = ["BillingActivities", "billing_report", "ledger_entries"]


class BillingActivities(MeteringActivities):
    def __init__(
        self, aws: Aws, registry: Registry, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.aws = aws
        self.registry = registry
        self.ledger = Ledger(registry)
        #: Wall clock of the metering window (a parameter so tests can age batches).
        self.clock = clock or (lambda: datetime.now(UTC))

    @activity.defn
    def close_billing_periods(self, req: CloseBillingPeriodsInput) -> CloseBillingPeriodsResult:
        """Write one ledger entry per (cluster, hourly period) that ended by ``until``.

        Each entry is a conditional put (``attribute_not_exists``): a retry, a replay or a crashed
        worker's second attempt finds it and counts it as existing, never twice. Each cluster keeps
        ``billed_through`` so a tick touches only new periods.
        """
        bind_subject(org_id=req.org_id)
        s = self.aws.settings
        written = existing = minutes_total = 0
        cost_total = Decimal(0)
        until = req.until.astimezone(UTC)
        clusters = self.registry.clusters(req.org_id)
        if req.final:
            # Only offboarding ends the meter: a ``stop`` signal from anyone else (the signal is
            # not authenticated) would otherwise end billing for good while clusters come later.
            state = (self.registry.org_item(req.org_id) or {}).get("state")
            if state not in (OrgState.OFFBOARDING.value, OrgState.OFFBOARDED.value):
                raise ApplicationError(
                    f"cannot close the final billing period: organisation {req.org_id} is {state}, not offboarding "
                    "(the meter stops only when the organisation is offboarded)",
                    type="BillingStopRefused",
                    non_retryable=True,
                )
            running = [
                c["name"] for c in clusters for x in c.get("segments") or [] if x.get("end") is None
            ]
            if running:
                raise ApplicationError(
                    f"cannot close the final billing period: {', '.join(sorted(set(running)))} still running "
                    "(delete the clusters first; their usage is never billed ahead of time)",
                    type="BillingStillRunning",
                    non_retryable=True,
                )
        org_record: OrgRecord | str | None = None  # read once, when a cluster has windows to close
        for c in clusters:
            segments = [UsageSegment.model_validate(x) for x in c.get("segments") or []]
            if not segments:
                continue  # failed or cancelled creations, or not yet running: nothing to bill
            since = (
                datetime.fromisoformat(c["billed_through"])
                if c.get("billed_through")
                else billing.floor_hour(segments[0].start)
            )
            last = since
            todo = billing.windows(segments, since, until, partial=req.partial)
            capacity = "requested"
            if todo:
                # Bill what ran: compute nodes as observed in the customer account, never more than requested.
                if org_record is None:
                    org_record = self._org_or_reason(req.org_id)
                instances, capacity = self._observed_capacity(req.org_id, org_record, c, segments)
                if instances is not None:
                    segments = billing.reconcile(segments, instances)
            for p, start, end in todo:
                lines = billing.node_minutes(segments, start, end, until)
                last = end
                if not lines:
                    continue
                amount = billing.cost(lines, s.rates)
                # A part of an hour (a final metering closed it mid-hour) is an entry of its own.
                item = {
                    "region": c.get("region"),
                    "period_start": p.isoformat(),
                    "window_start": start.isoformat(),
                    "window_end": end.isoformat(),
                    "lines": lines,
                    "line_costs": billing.line_costs(lines, s.rates),
                    "node_minutes": sum(lines.values()),
                    "cost_usd": amount,
                    "rate_version": s.rate_version,
                    "rates": {t: s.rates[t] for t in lines},
                    "capacity": capacity,
                    "metered": False,
                    "written_at": datetime.now(UTC).isoformat(),
                }
                if self.ledger.add_entry(req.org_id, c["name"], p, (start, end), item):
                    written += 1
                    for instance_type, minutes in lines.items():
                        metrics.count(
                            "bridgehead_billed_node_minutes",
                            int(minutes),
                            instance_type=instance_type,
                        )
                    minutes_total += int(item["node_minutes"])  # type: ignore[arg-type]  # an int: written just above
                    cost_total += amount
                else:
                    existing += 1
            if last > since:
                self.registry.update_cluster(
                    req.org_id, c["name"], {"billed_through": last.isoformat()}
                )
        totals = self.ledger.totals(req.org_id)
        log.info(
            "billing periods closed", written=written, existing=existing, node_minutes=minutes_total
        )
        return CloseBillingPeriodsResult(
            entries_written=written,
            entries_existing=existing,
            node_minutes=minutes_total,
            cost_usd=cost_total,
            closed_until=until,
            ledger_node_minutes=int(totals.get("node_minutes", 0)),
            ledger_cost_usd=Decimal(str(totals.get("cost_usd", 0))),
            ledger_entries=int(totals.get("entries", 0)),
            budget=closed_month_budget(self.registry, req.org_id, until, self.ledger),
        )

    def _org_or_reason(self, org_id: str) -> OrgRecord | str:
        """The org's record for customer calls, or why capacity cannot be observed."""
        try:
            org = self.registry.org(org_id)
        except ApplicationError as e:
            return e.message
        return org if org.role_arn else "the organisation has no verified role"

    def _observed_capacity(
        self, org_id: str, org: OrgRecord | str, c: dict[str, Any], segments: list[UsageSegment]
    ) -> tuple[list[tuple[datetime, datetime | None]] | None, str]:
        """The cluster's compute instances over time, as observed in its Auto Scaling group and,
        for nodes detached from the group that keep running, by their launch tags.

        Each call records what it sees on the cluster's registry item (``observed_instances``:
        launch time, end, last seen), so an instance that is gone stays known: it ended when
        its termination activity says, else when it was last seen in service (time not observed
        is never billed). When the group is gone because the cluster was deleted, instances still
        open ran until the deletion was requested (the end of the last segment). Returns None (bill
        as requested) when the group was never observed (no group, or no access to it), with the
        reason recorded on the ledger entries."""
        known: dict[str, dict[str, Any]] = dict(c.get("observed_instances") or {})
        name = c["name"]
        group = (c.get("outputs") or {}).get(
            "ComputeGroupName"
        ) or f"{ids.org_prefix(org_id)}{name}-compute"
        now = datetime.now(UTC)
        try:
            if isinstance(org, str):
                raise ApplicationError(org)
            auto = self.aws.customer(org, "autoscaling", c["region"])
            with aws_errors("autoscaling:DescribeAutoScalingGroups"):
                groups = auto.describe_auto_scaling_groups(AutoScalingGroupNames=[group])[
                    "AutoScalingGroups"
                ]
            in_service: dict[str, datetime] = {}
            ended: dict[str, datetime] = {}
            if groups:
                ids_now = [
                    i["InstanceId"]
                    for i in groups[0].get("Instances", [])
                    if i.get("LifecycleState") == "InService"
                ]
                # Every compute node of this cluster by the tags its launch template gives it:
                # the group's, with their launch times, and those detached from the group, which
                # keep running (and costing) outside it.
                tagged = self._tagged_compute(org, c["region"], org_id, name)
                in_service.update({i: tagged[i] for i in ids_now if i in tagged})
                untagged = [i for i in ids_now if i not in tagged]  # (launched before the tags)
                if untagged:
                    ec2 = self.aws.customer(org, "ec2", c["region"])
                    with aws_errors("ec2:DescribeInstances"):
                        for r in ec2.describe_instances(InstanceIds=untagged)["Reservations"]:
                            for i in r["Instances"]:
                                in_service[i["InstanceId"]] = i["LaunchTime"].astimezone(UTC)
                for iid, launched in tagged.items():
                    in_service.setdefault(iid, launched)
                with aws_errors("autoscaling:DescribeScalingActivities"):
                    for a in auto.describe_scaling_activities(AutoScalingGroupName=group).get(
                        "Activities", []
                    ):
                        words = str(a.get("Description", "")).split()
                        if (
                            a.get("EndTime")
                            and words[:3] == ["Terminating", "EC2", "instance:"]
                            and len(words) > 3
                        ):
                            ended[words[3]] = a["EndTime"].astimezone(UTC)
        except ApplicationError as e:
            if not known:
                return None, f"requested (capacity not observed: {e.message[:200]})"
            groups, in_service, ended = [], {}, {}
        if not groups and not known:
            return None, "requested (no Auto Scaling group observed)"
        last_end = segments[-1].end
        for iid, launched in in_service.items():
            rec = known.setdefault(iid, {"launched": launched.isoformat()})
            rec["last_seen"] = now.isoformat()
        for iid, rec in known.items():
            if iid in in_service or rec.get("ended"):
                continue
            if iid in ended:
                rec["ended"] = ended[iid].isoformat()
            elif not groups and last_end is not None:
                rec["ended"] = max(datetime.fromisoformat(rec["last_seen"]), last_end).isoformat()
            elif groups:
                rec["ended"] = rec["last_seen"]
        if known != (c.get("observed_instances") or {}):
            self.registry.update_cluster(org_id, name, {"observed_instances": known})
        instances = [
            (
                datetime.fromisoformat(r["launched"]),
                datetime.fromisoformat(r["ended"]) if r.get("ended") else None,
            )
            for r in known.values()
        ]
        return instances, "observed"

    def _tagged_compute(
        self, org: OrgRecord, region: str, org_id: str, name: str
    ) -> dict[str, datetime]:
        """Running compute nodes of the cluster by their launch tags (``bridgehead:workflow`` is
        the cluster's workflow id, unique to org and cluster): instance id -> launch time."""
        ec2 = self.aws.customer(org, "ec2", region)
        filters = [
            {"Name": "tag:bridgehead:workflow", "Values": [ids.cluster_workflow_id(org_id, name)]},
            {"Name": "tag:bridgehead:node", "Values": ["compute"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
        found: dict[str, datetime] = {}
        with aws_errors("ec2:DescribeInstances"):
            for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
                for r in page["Reservations"]:
                    for i in r["Instances"]:
                        found[i["InstanceId"]] = i["LaunchTime"].astimezone(UTC)
        return found

    @activity.defn
    def billing_report(self, req: BillingReportInput) -> BillingReport:
        """The organisation's bill from the ledger (see :func:`billing_report`)."""
        bind_subject(org_id=req.org_id)
        return billing_report(self.registry, req.org_id, req.month, req.now or datetime.now(UTC))

    @activity.defn
    def record_correction(self, req: RecordCorrectionInput) -> CorrectResult:
        """Write an operator's correction of a closed period as a ledger entry of its own
        (:meth:`activities.ledger.Ledger.add_correction`): no entry is ever changed or deleted. Priced with
        :func:`bridgehead.billing.line_cost` at the rate the corrected entry was priced with, added
        to the ledger totals in the same transaction, exactly once per correction id (a retry
        returns the recorded correction). Never sent to Marketplace."""
        bind_subject(org_id=req.org_id, cluster=req.correction.cluster)
        c = req.correction
        period = billing.floor_hour(c.period)
        done = self.ledger.correction(req.org_id, period, c.cluster, req.correction_id)
        if done is not None:
            return _correction_result(done)
        entries = self.ledger.period_entries(req.org_id, period, c.cluster)
        if not entries:
            raise ApplicationError(
                f"no ledger entry for cluster {c.cluster} in the period starting {period.isoformat()}: "
                "only closed periods can be corrected",
                type="BadInput",
                non_retryable=True,
            )
        original: dict[str, int] = defaultdict(int)
        rates: dict[str, Decimal] = {}
        for e in entries:
            for t, minutes in e["lines"].items():
                original[t] += int(minutes)
                rates.setdefault(t, Decimal(str((e.get("rates") or self.aws.settings.rates)[t])))
        itype = c.instance_type or (next(iter(original)) if len(original) == 1 else None)
        if itype is None or itype not in original:
            raise ApplicationError(
                f"instance_type must be one of {', '.join(sorted(original))} (the lines of that period)",
                type="BadInput",
                non_retryable=True,
            )
        earlier = self.ledger.period_corrections(req.org_id, period, c.cluster)
        before = sum(int(x["node_minutes_delta"]) for x in earlier if x["instance_type"] == itype)
        net = original[itype] + before + c.node_minutes_delta
        if net < 0:
            raise ApplicationError(
                f"the correction would leave {net} node-minutes of {itype} (billed {original[itype]}, "
                f"corrected by {before} before): credit at most {original[itype] + before}",
                type="BadInput",
                non_retryable=True,
            )
        amount = billing.line_cost(c.node_minutes_delta, rates[itype])
        fields = {
            "cluster": c.cluster,
            "period_start": period.isoformat(),
            "instance_type": itype,
            "node_minutes_delta": c.node_minutes_delta,
            "cost_usd_delta": amount,
            "rate": rates[itype],
            "reason": c.reason,
            "requested_at": req.requested_at.isoformat(),
            "original_node_minutes": original[itype],
            "net_node_minutes": net,
            "metered": all(e.get("metered") for e in entries),
        }
        item = self.ledger.add_correction(req.org_id, period, c.cluster, req.correction_id, fields)
        log.info(
            "billing correction recorded",
            correction=req.correction_id,
            delta=c.node_minutes_delta,
            instance_type=itype,
        )
        return _correction_result(item)


def _correction_result(item: dict[str, Any]) -> CorrectResult:
    return CorrectResult(
        correction_id=item["correction_id"],
        cluster=item["cluster"],
        period=datetime.fromisoformat(item["period_start"]),
        instance_type=item["instance_type"],
        node_minutes_delta=int(item["node_minutes_delta"]),
        cost_usd_delta=Decimal(str(item["cost_usd_delta"])),
        original_node_minutes=int(item["original_node_minutes"]),
        net_node_minutes=int(item["net_node_minutes"]),
        metered=bool(item["metered"]),
    )
