"""The billing ledger (exactly once per (cluster, period)) and AWS Marketplace metering."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import Aws, OrgRecord
from activities.errors import aws_errors
from activities.registry import Registry
from bridgehead import billing, ids, metrics
from bridgehead.logging import bind_subject, get_logger
from bridgehead.models import (
    METERING_STATES,
    BillingReport,
    BillingReportInput,
    CloseBillingPeriodsInput,
    CloseBillingPeriodsResult,
    CorrectResult,
    MarketplaceState,
    MeteringNotice,
    MeterUsageInput,
    MeterUsageResult,
    RecordCorrectionInput,
    ReportLine,
    UsageSegment,
)

log = get_logger("bridgehead.activities.billing")


class BillingActivities:
    def __init__(self, aws: Aws, registry: Registry, clock: Callable[[], datetime] | None = None) -> None:
        self.aws = aws
        self.registry = registry
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
            running = [c["name"] for c in clusters for x in c.get("segments") or [] if x.get("end") is None]
            if running:
                raise ApplicationError(
                    f"cannot close the final billing period: {', '.join(sorted(set(running)))} still running "
                    "(delete the clusters first; their usage is never billed ahead of time)",
                    type="BillingStillRunning", non_retryable=True,
                )  # fmt: skip
        org_record: OrgRecord | str | None = None  # read once, when a cluster has windows to close
        for c in clusters:
            segments = [UsageSegment.model_validate(x) for x in c.get("segments") or []]
            if not segments:
                continue  # failed or cancelled creations, or not yet running: nothing to bill
            since = datetime.fromisoformat(c["billed_through"]) if c.get("billed_through") else billing.floor_hour(segments[0].start)
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
                # A whole hour keeps its historical key; a part of an hour (a final metering
                # closed it mid-hour) is keyed by its bounds, so both parts exist exactly once.
                sk = f"PERIOD#{p.isoformat()}#{c['name']}"
                if (start, end) != (p, p + billing.PERIOD):
                    sk += f"#{start.isoformat()}-{end.isoformat()}"
                item = {
                    "pk": f"ORG#{req.org_id}", "sk": sk, "cluster": c["name"],
                    "region": c.get("region"), "period_start": p.isoformat(), "window_start": start.isoformat(),
                    "window_end": end.isoformat(), "lines": lines, "line_costs": billing.line_costs(lines, s.rates),
                    "node_minutes": sum(lines.values()), "cost_usd": amount, "rate_version": s.rate_version,
                    "rates": {t: s.rates[t] for t in lines}, "capacity": capacity,
                    "metered": False, "written_at": datetime.now(UTC).isoformat(),
                }  # fmt: skip
                add = {"node_minutes": item["node_minutes"], "cost_usd": amount, "entries": 1}
                if self.registry.put_new_and_add(item, (f"ORG#{req.org_id}", "TOTALS"), add, table=self.registry.ledger):
                    written += 1
                    for instance_type, minutes in lines.items():
                        metrics.count("bridgehead_billed_node_minutes", int(minutes), instance_type=instance_type)
                    minutes_total += item["node_minutes"]
                    cost_total += amount
                else:
                    existing += 1
            if last > since:
                self.registry.update(f"ORG#{req.org_id}", f"CLUSTER#{c['name']}", {"billed_through": last.isoformat()})
        totals = self.registry.get(f"ORG#{req.org_id}", "TOTALS", table=self.registry.ledger) or {}
        log.info("billing periods closed", written=written, existing=existing, node_minutes=minutes_total)
        return CloseBillingPeriodsResult(entries_written=written, entries_existing=existing, node_minutes=minutes_total,
                                         cost_usd=cost_total, closed_until=until, ledger_node_minutes=int(totals.get("node_minutes", 0)),
                                         ledger_cost_usd=Decimal(str(totals.get("cost_usd", 0))), ledger_entries=int(totals.get("entries", 0)))  # fmt: skip

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
        """The cluster's compute instances over time, as observed in its Auto Scaling group.

        Each call records what it sees on the cluster's registry item (``observed_instances``:
        launch time, end, last seen), so an instance that is gone stays known: it ended when
        its termination activity says, else when it was last seen in service (time not observed
        is never billed). When the group is gone because the cluster was deleted, instances still
        open ran until the deletion was requested (the end of the last segment). Returns None (bill
        as requested) when the group was never observed (no group, or no access to it), with the
        reason recorded on the ledger entries."""
        known: dict[str, dict[str, Any]] = dict(c.get("observed_instances") or {})
        name = c["name"]
        group = (c.get("outputs") or {}).get("ComputeGroupName") or f"{ids.org_prefix(org_id)}{name}-compute"
        now = datetime.now(UTC)
        try:
            if isinstance(org, str):
                raise ApplicationError(org)
            auto = self.aws.customer(org, "autoscaling", c["region"])
            with aws_errors("autoscaling:DescribeAutoScalingGroups"):
                groups = auto.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
            in_service: dict[str, datetime] = {}
            ended: dict[str, datetime] = {}
            if groups:
                ids_now = [i["InstanceId"] for i in groups[0].get("Instances", []) if i.get("LifecycleState") == "InService"]
                if ids_now:
                    ec2 = self.aws.customer(org, "ec2", c["region"])
                    with aws_errors("ec2:DescribeInstances"):
                        for r in ec2.describe_instances(InstanceIds=ids_now)["Reservations"]:
                            for i in r["Instances"]:
                                in_service[i["InstanceId"]] = i["LaunchTime"].astimezone(UTC)
                with aws_errors("autoscaling:DescribeScalingActivities"):
                    for a in auto.describe_scaling_activities(AutoScalingGroupName=group).get("Activities", []):
                        words = str(a.get("Description", "")).split()
                        if a.get("EndTime") and words[:3] == ["Terminating", "EC2", "instance:"] and len(words) > 3:
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
            self.registry.update(f"ORG#{org_id}", f"CLUSTER#{name}", {"observed_instances": known})
        instances = [(datetime.fromisoformat(r["launched"]), datetime.fromisoformat(r["ended"]) if r.get("ended") else None) for r in known.values()]
        return instances, "observed"

    @activity.defn
    def meter_usage(self, req: MeterUsageInput) -> MeterUsageResult:
        """Send unmetered ledger usage to AWS Marketplace, once, as AWS documents it.

        Only an organisation linked to a Marketplace buyer (``MarketplaceSubscription``) whose
        subscription is active is metered; otherwise usage stays in the ledger only and the result
        says why (``skipped``). Records name the buyer by ``CustomerAWSAccountId``.

        Unmetered ledger entries are grouped per instance type (the dimension) into one batch,
        written to the ledger (``METER#<timestamp>``, unique per batch) before it is sent, in calls
        of at most 25 records. A batch is resent after a crash or a throttle: only the dimensions
        Marketplace has not acknowledged, with the very same records, which AWS documents as
        idempotent (``Success``, counted once). Marketplace answers:

        * ``Success``: acknowledged.
        * ``DuplicateRecord`` (a record with the same customer, dimension and timestamp but a
          *different* quantity was metered before; this one was not honored): a defect. Never
          acknowledged, never resent or carried (that could bill twice): flagged on the batch and
          its entries (``metering_defects``), logged as an error, counted
          (``bridgehead_metering_defects``) and shown by the report, for an operator to settle.
        * ``CustomerNotSubscribed``: metering of the organisation stops (state ``NOT_SUBSCRIBED``
          until ``subscribe-success``) and the admin is told (``notice``); the batch waits.
        * ``UnprocessedRecords``: throttled, resent next call.

        Marketplace refuses usage six hours old or more: a batch is resent until ``RESEND_WINDOW``,
        then its unacknowledged rest is carried into the next new batch (late, never lost), and a
        batch older than ``MARKETPLACE_LIMIT`` is never sent.
        """
        bind_subject(org_id=req.org_id)
        link = self.registry.marketplace(req.org_id)
        tally = MeterUsageResult(sent=0, already_sent=0, unprocessed=0)
        if link is None:
            tally.skipped = "no AWS Marketplace link (MarketplaceSubscription): usage is kept in the ledger only"
            return tally
        if link.get("state") not in METERING_STATES:
            tally.skipped = f"AWS Marketplace subscription is {link.get('state')}: usage is kept in the ledger only"
            return tally
        pk = f"ORG#{req.org_id}"
        now = self.clock()
        with self._lease(pk):
            batches = self.registry.query(pk, "METER#", table=self.registry.ledger)
            for batch in [b for b in batches if b.get("status") == "PENDING"]:
                age = now - _batch_time(batch)
                if age < MARKETPLACE_LIMIT:
                    self._send(req.org_id, link, batch, tally)
                    if tally.not_subscribed:
                        return tally
                if batch["status"] == "PENDING" and age >= RESEND_WINDOW:
                    self._expire(pk, batch, tally)
            batch = self._new_batch(req.org_id, link, now, batches)
            if batch is not None:
                self._send(req.org_id, link, batch, tally)
        return tally

    @contextmanager
    def _lease(self, pk: str) -> Iterator[None]:
        """One metering attempt per organisation at a time (an attempt that outlived its timeout
        must not batch the same entries as its retry). Held for the attempt's start-to-close
        timeout at most, so a crashed attempt never blocks its retry for longer."""
        info = activity.info()
        me = f"{info.workflow_id}/{info.activity_id}/{info.attempt}"
        now = datetime.now(UTC)
        expires = now + (info.start_to_close_timeout or timedelta(minutes=5))
        item = {"pk": pk, "sk": "METER-LEASE", "lease_holder": me, "lease_expires": expires.isoformat()}
        held_ok = self.registry.put(
            item,
            condition="attribute_not_exists(pk) OR lease_expires < :now OR lease_holder = :me",
            values={":now": now.isoformat(), ":me": me},
            table=self.registry.ledger,
        )
        if not held_ok:
            held = self.registry.get(pk, "METER-LEASE", table=self.registry.ledger) or {}
            raise ApplicationError(
                f"another metering attempt for this organisation is running ({held.get('lease_holder')}, "
                f"until {held.get('lease_expires')}); retrying",
                type="MeteringBusy",
            )
        try:
            yield
        finally:
            released = {**item, "lease_expires": datetime.min.replace(tzinfo=UTC).isoformat()}
            self.registry.put(released, condition="lease_holder = :me", values={":me": me}, table=self.registry.ledger)

    def _new_batch(self, org_id: str, link: dict[str, Any], now: datetime, batches: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The batch for every entry and carry no batch holds yet, written before it is sent.

        Entries of periods before the organisation was linked are never metered (the buyer had
        not subscribed then); the report lists them as not metered."""
        pk = f"ORG#{org_id}"
        unsent = [b for b in batches if b.get("status") != "SENT"]
        held = {sk for b in unsent for sk in b.get("entries", [])}
        claimed = {sk for b in batches for sk in b.get("carries", [])}
        linked_hour = billing.floor_hour(datetime.fromisoformat(link["linked_at"])).isoformat()
        entries = [
            e
            for e in self.registry.query(pk, "PERIOD#", table=self.registry.ledger)
            if not e.get("metered") and e["sk"] not in held and e["period_start"] >= linked_hour
        ]
        carries = [b for b in batches if b.get("status") == "EXPIRED" and b.get("carry") and b["sk"] not in claimed]
        qty: dict[str, int] = defaultdict(int)
        for e in entries:
            for t, minutes in e["lines"].items():
                qty[t] += int(minutes)
        for b in carries:
            for t, minutes in b["carry"].items():
                qty[t] += int(minutes)
        if not qty:
            return None
        stamp = now.astimezone(UTC).replace(microsecond=0)
        if stamp.isoformat() in {_batch_time(b).isoformat() for b in batches}:
            return None  # another attempt made a batch this very second; it is sent on the next call
        batch = {
            "pk": pk,
            "sk": f"METER#{stamp.isoformat()}",
            "hour": stamp.isoformat(),
            "status": "PENDING",
            "quantities": dict(qty),
            "entries": [e["sk"] for e in entries],
            "carries": [b["sk"] for b in carries],
            "acked": [],
            "customer_aws_account_id": link["customer_aws_account_id"],
        }
        if not self.registry.put(batch, condition="attribute_not_exists(pk)", table=self.registry.ledger):
            return None
        return batch

    def _send(self, org_id: str, link: dict[str, Any], batch: dict[str, Any], tally: MeterUsageResult) -> None:
        """Send a batch's unacknowledged, non-defective dimensions (at most ``MAX_RECORDS`` per
        call); settle it once every dimension is acknowledged or flagged."""
        pk = f"ORG#{org_id}"
        stamp = _batch_time(batch)
        acked = set(batch.get("acked") or [])
        defects: dict[str, str] = dict(batch.get("defects") or {})
        # Batches written before the link existed named no account: they bill the linked buyer.
        account = batch.get("customer_aws_account_id") or link["customer_aws_account_id"]
        records = [
            {"Timestamp": stamp, "CustomerAWSAccountId": account, "Dimension": _dimension(t), "Quantity": int(q)}
            for t, q in sorted(batch["quantities"].items())
            if _dimension(t) not in acked and _dimension(t) not in defects and int(q) > 0
        ]
        for chunk in [records[i : i + MAX_RECORDS] for i in range(0, len(records), MAX_RECORDS)]:
            with aws_errors("meteringmarketplace:BatchMeterUsage"):
                resp = self.aws.platform("meteringmarketplace").batch_meter_usage(
                    UsageRecords=chunk, ProductCode=self.aws.settings.marketplace_product_code
                )
            for r in resp.get("Results", []):
                dim, status = r["UsageRecord"]["Dimension"], r.get("Status")
                if status == "Success":
                    acked.add(dim)
                    tally.sent += 1
                elif status == "DuplicateRecord":
                    defects[dim] = "DuplicateRecord"
                    tally.defects += 1
                    tally.messages.append(
                        f"{dim} at {stamp.isoformat()}: DuplicateRecord (Marketplace holds a different quantity "
                        "for this customer, dimension and time; not honored, flagged for an operator)"
                    )
                    metrics.count("bridgehead_metering_defects", kind="DuplicateRecord", dimension=dim)
                    log.error("Marketplace refused a usage record as DuplicateRecord: a different quantity was metered "
                              "for the same customer, dimension and timestamp", batch=batch["sk"], dimension=dim,
                              quantity=r["UsageRecord"].get("Quantity"))  # fmt: skip
                elif status == "CustomerNotSubscribed":
                    tally.unprocessed += 1
                    tally.not_subscribed = True
                    tally.messages.append(f"{dim} at {stamp.isoformat()}: CustomerNotSubscribed")
                else:
                    tally.unprocessed += 1
                    tally.messages.append(f"{dim} at {stamp.isoformat()}: {status}")
            for r in resp.get("UnprocessedRecords", []):
                tally.unprocessed += 1
                tally.transient += 1
                tally.messages.append(f"{r.get('Dimension')} at {stamp.isoformat()}: unprocessed, will retry")
            if tally.not_subscribed:
                break
        changes: dict[str, Any] = {}
        if acked != set(batch.get("acked") or []):
            changes["acked"] = sorted(acked)
        if defects != dict(batch.get("defects") or {}):
            changes["defects"] = defects
        if changes:
            self.registry.update(pk, batch["sk"], changes, table=self.registry.ledger)
            batch.update(changes)
        if tally.not_subscribed:
            self._stop_metering(org_id, link, tally)
            return
        dims = {_dimension(t) for t, q in batch["quantities"].items() if int(q) > 0}
        if dims <= acked | set(defects):
            status = "DEFECT" if defects else "SENT"
            for sk in batch.get("entries", []):
                flags: dict[str, Any] = {"metered": not defects, "metered_in": batch["sk"]}
                if defects:
                    flags["metering_defects"] = sorted(defects)
                self.registry.update(pk, sk, flags, table=self.registry.ledger)
            self.registry.update(pk, batch["sk"], {"status": status, "sent_at": self.clock().isoformat()}, table=self.registry.ledger)
            batch["status"] = status

    def _stop_metering(self, org_id: str, link: dict[str, Any], tally: MeterUsageResult) -> None:
        """Marketplace says the buyer is not subscribed: stop metering this org and tell its admin."""
        at = self.clock()
        reason = "AWS Marketplace answered CustomerNotSubscribed to a usage record"
        moved = self.registry.set_marketplace_state(
            org_id, MarketplaceState.NOT_SUBSCRIBED, reason, at, only_from=[s.value for s in METERING_STATES]
        )
        log.warning("metering stopped: the Marketplace buyer is not subscribed", customer_aws_account_id=link["customer_aws_account_id"])
        org = self.registry.org_item(org_id) or {}
        if moved and org.get("admin_email"):
            tally.notice = MeteringNotice(
                to=org["admin_email"],
                subject=f"Bridgehead: AWS Marketplace metering stopped for {org_id}",
                body=(
                    f"AWS Marketplace refused usage of organisation {org_id} (CustomerNotSubscribed: the subscription of "
                    f"AWS account {link['customer_aws_account_id']} is not active). Usage is still recorded in the ledger; "
                    "metering resumes when the subscription is active again (subscribe-success)."
                ),
                idempotency_key=f"mp-not-subscribed-{org_id}-{at.isoformat()}",
            )

    def _expire(self, pk: str, batch: dict[str, Any], tally: MeterUsageResult) -> None:
        """Too old for Marketplace: keep what it acknowledged, carry the rest into the next batch."""
        acked = set(batch.get("acked") or [])
        carry = {t: int(q) for t, q in batch["quantities"].items() if _dimension(t) not in acked and int(q) > 0}
        # One write: the status and the carry together, so a crash cannot carry it twice or lose it.
        self.registry.update(pk, batch["sk"], {"status": "EXPIRED", "carry": carry, "expired_at": self.clock().isoformat()},
                             table=self.registry.ledger)  # fmt: skip
        batch.update(status="EXPIRED", carry=carry)
        for sk in batch.get("entries", []):
            self.registry.update(pk, sk, {"metered": True, "metered_in": batch["sk"]}, table=self.registry.ledger)
        tally.expired += 1
        log.warning("usage batch past the Marketplace window, carried into the next batch", batch=batch["sk"], carry=carry)


    @activity.defn
    def billing_report(self, req: BillingReportInput) -> BillingReport:
        """The organisation's bill from the ledger (see :func:`billing_report`)."""
        bind_subject(org_id=req.org_id)
        return billing_report(self.registry, req.org_id, req.month, req.now or datetime.now(UTC))

    @activity.defn
    def record_correction(self, req: RecordCorrectionInput) -> CorrectResult:
        """Write an operator's correction of a closed period as a ledger entry of its own
        (``CORRECTION#<hour>#<cluster>#<id>``): no entry is ever changed or deleted. Priced with
        :func:`bridgehead.billing.line_cost` at the rate the corrected entry was priced with, added
        to the ledger totals in the same transaction, exactly once per correction id (a retry
        returns the recorded correction). Never sent to Marketplace."""
        bind_subject(org_id=req.org_id, cluster=req.correction.cluster)
        c = req.correction
        period = billing.floor_hour(c.period)
        pk = f"ORG#{req.org_id}"
        prefix = f"{period.isoformat()}#{c.cluster}#"
        done = self.registry.get(pk, f"CORRECTION#{prefix}{req.correction_id}", table=self.registry.ledger)
        if done is not None:
            return _correction_result(done)
        entries = [e for e in self.registry.query(pk, f"PERIOD#{period.isoformat()}#{c.cluster}", table=self.registry.ledger)
                   if e["cluster"] == c.cluster]  # fmt: skip
        if not entries:
            raise ApplicationError(f"no ledger entry for cluster {c.cluster} in the period starting {period.isoformat()}: "
                                   "only closed periods can be corrected", type="BadInput", non_retryable=True)  # fmt: skip
        original: dict[str, int] = defaultdict(int)
        rates: dict[str, Decimal] = {}
        for e in entries:
            for t, minutes in e["lines"].items():
                original[t] += int(minutes)
                rates.setdefault(t, Decimal(str((e.get("rates") or self.aws.settings.rates)[t])))
        itype = c.instance_type or (next(iter(original)) if len(original) == 1 else None)
        if itype is None or itype not in original:
            raise ApplicationError(f"instance_type must be one of {', '.join(sorted(original))} (the lines of that period)",
                                   type="BadInput", non_retryable=True)  # fmt: skip
        before = sum(int(x["node_minutes_delta"]) for x in self.registry.ledger_corrections(req.org_id, prefix) if x["instance_type"] == itype)
        net = original[itype] + before + c.node_minutes_delta
        if net < 0:
            raise ApplicationError(f"the correction would leave {net} node-minutes of {itype} (billed {original[itype]}, "
                                   f"corrected by {before} before): credit at most {original[itype] + before}",
                                   type="BadInput", non_retryable=True)  # fmt: skip
        amount = billing.line_cost(c.node_minutes_delta, rates[itype])
        item = {
            "pk": pk, "sk": f"CORRECTION#{prefix}{req.correction_id}", "correction_id": req.correction_id,
            "cluster": c.cluster, "period_start": period.isoformat(), "instance_type": itype,
            "node_minutes_delta": c.node_minutes_delta, "cost_usd_delta": amount, "rate": rates[itype],
            "reason": c.reason, "requested_at": req.requested_at.isoformat(), "original_node_minutes": original[itype],
            "net_node_minutes": net, "metered": all(e.get("metered") for e in entries),
        }  # fmt: skip
        add = {"node_minutes": c.node_minutes_delta, "cost_usd": amount, "corrections": 1}
        if not self.registry.put_new_and_add(item, (pk, "TOTALS"), add, table=self.registry.ledger):
            item = self.registry.get(pk, item["sk"], table=self.registry.ledger) or item
        log.info("billing correction recorded", correction=req.correction_id, delta=c.node_minutes_delta, instance_type=itype)
        return _correction_result(item)


def _correction_result(item: dict[str, Any]) -> CorrectResult:
    return CorrectResult(
        correction_id=item["correction_id"], cluster=item["cluster"], period=datetime.fromisoformat(item["period_start"]),
        instance_type=item["instance_type"], node_minutes_delta=int(item["node_minutes_delta"]),
        cost_usd_delta=Decimal(str(item["cost_usd_delta"])), original_node_minutes=int(item["original_node_minutes"]),
        net_node_minutes=int(item["net_node_minutes"]), metered=bool(item["metered"]),
    )  # fmt: skip


def billing_report(registry: Registry, org_id: str, month: str | None, now: datetime) -> BillingReport:
    """The organisation's bill from the ledger: per cluster and instance type the node-minutes
    and money first billed, the corrections and the net; the open hours so far; what Marketplace
    did not take and why; credits owed for corrected usage Marketplace had already accepted.

    Money comes from the ledger, never recomputed with another rounding: a line costs the sum of its
    entries' ``line_costs`` (:func:`bridgehead.billing.line_cost`), so the report's totals are the
    ledger's to the cent. Entries written before ``line_costs`` existed are split with the same
    function, and a cent of difference to their stored ``cost_usd`` goes to their largest line.
    """
    pk = f"ORG#{org_id}"
    entries = ledger_entries(registry, org_id, month)
    corrections = registry.ledger_corrections(org_id, month or "")
    link = registry.marketplace(org_id)
    linked_hour = billing.floor_hour(datetime.fromisoformat(link["linked_at"])).isoformat() if link else None
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(cluster: str, itype: str) -> dict[str, Any]:
        return rows.setdefault((cluster, itype), {"min": 0, "usd": Decimal(0), "cmin": 0, "cusd": Decimal(0)})

    report = BillingReport(org_id=org_id, month=month)
    unmetered: dict[str, list[int]] = {}
    for e in entries:
        costs = _entry_line_costs(e, registry.aws.settings.rates)
        for t, minutes in e["lines"].items():
            r = row(e["cluster"], t)
            r["min"] += int(minutes)
            r["usd"] += costs[t]
        where = f"{e['cluster']} {e.get('window_start') or e['period_start']}"
        if e.get("metering_defects"):
            report.defects.append(f"{where}: {', '.join(e['metering_defects'])} refused as DuplicateRecord (not metered; settle by hand)")
        elif not e.get("metered"):
            if link is None:
                why = "no AWS Marketplace link"
            elif e["period_start"] < (linked_hour or ""):
                why = "before the AWS Marketplace link"
            elif link.get("state") not in METERING_STATES:
                why = f"AWS Marketplace subscription {link.get('state')}"
            else:
                why = "not yet accepted by AWS Marketplace"
            n = unmetered.setdefault(why, [0, 0])
            n[0] += 1
            n[1] += int(e["node_minutes"])
    report.not_metered = [f"{n} ledger entries ({minutes} node-minutes): {why}" for why, (n, minutes) in sorted(unmetered.items())]
    for x in corrections:
        r = row(x["cluster"], x["instance_type"])
        r["cmin"] += int(x["node_minutes_delta"])
        r["cusd"] += Decimal(str(x["cost_usd_delta"]))
        if x.get("metered") and int(x["node_minutes_delta"]) < 0:
            report.credits.append(f"{x['cluster']} {x['period_start']} {x['instance_type']}: credit ${-Decimal(str(x['cost_usd_delta']))} "
                                  f"({-int(x['node_minutes_delta'])} node-minutes Marketplace already accepted): {x['reason']}")  # fmt: skip
    for (cluster, itype), r in sorted(rows.items()):
        report.lines.append(ReportLine(cluster=cluster, instance_type=itype, node_minutes=r["min"], corrections_node_minutes=r["cmin"],
                                       net_node_minutes=r["min"] + r["cmin"], cost_usd=r["usd"], corrections_usd=r["cusd"],
                                       net_usd=r["usd"] + r["cusd"]))  # fmt: skip
    report.node_minutes = sum(x.node_minutes for x in report.lines)
    report.corrections_node_minutes = sum(x.corrections_node_minutes for x in report.lines)
    report.net_node_minutes = report.node_minutes + report.corrections_node_minutes
    report.cost_usd = sum((x.cost_usd for x in report.lines), Decimal("0.00"))
    report.corrections_usd = sum((x.corrections_usd for x in report.lines), Decimal("0.00"))
    report.net_usd = report.cost_usd + report.corrections_usd
    if month is None or now.strftime("%Y-%m") == month:
        for c in registry.query(pk, "CLUSTER#"):
            segments = [UsageSegment.model_validate(x) for x in c.get("segments") or []]
            if not segments:
                continue
            since = datetime.fromisoformat(c["billed_through"]) if c.get("billed_through") else billing.floor_hour(segments[0].start)
            if c.get("observed_instances"):  # what ran, as far as the last tick saw it (no AWS call here)
                seen = [(datetime.fromisoformat(r["launched"]), datetime.fromisoformat(r["ended"]) if r.get("ended") else None)
                        for r in c["observed_instances"].values()]  # fmt: skip
                segments = billing.reconcile(segments, seen)
            so_far = sum(billing.node_minutes(segments, since, now, now).values()) if now > since else 0
            if so_far:
                report.in_progress[c["name"]] = so_far
    return report


def _entry_line_costs(e: dict[str, Any], fallback: dict[str, Decimal]) -> dict[str, Decimal]:
    if e.get("line_costs"):
        return {t: Decimal(str(v)) for t, v in e["line_costs"].items()}
    known = {**fallback, **(e.get("rates") or {})}
    rates = {t: Decimal(str(known.get(t, 0))) for t in e["lines"]}
    costs = billing.line_costs({t: int(v) for t, v in e["lines"].items()}, rates)
    gap = Decimal(str(e["cost_usd"])) - sum(costs.values(), Decimal(0))
    if gap and costs:
        largest = max(costs, key=lambda t: costs[t])
        costs[largest] += gap
    return costs


#: Marketplace accepts usage timestamped up to six hours in the past. A batch is resent until it is
#: this old, then sent a last time and the unacknowledged rest carried into a new batch.
RESEND_WINDOW = timedelta(hours=5)
#: Past this age Marketplace would refuse the whole call: the batch is no longer sent, only carried.
MARKETPLACE_LIMIT = timedelta(hours=5, minutes=50)
#: BatchMeterUsage takes at most 25 usage records per call (AWS Marketplace Metering API reference).
MAX_RECORDS = 25


def _dimension(instance_type: str) -> str:
    return f"node-minutes.{instance_type}"


def _batch_time(batch: dict[str, Any]) -> datetime:
    """The batch's record timestamp (``hour``: batches before carry-over were hourly)."""
    return datetime.fromisoformat(batch["hour"]).astimezone(UTC)


def ledger_entries(registry: Registry, org_id: str, month: str | None = None) -> list[dict[str, Any]]:
    """Ledger entries of an org, optionally for one ``YYYY-MM`` (for reports)."""
    prefix = f"PERIOD#{month}" if month else "PERIOD#"
    return registry.query(f"ORG#{org_id}", prefix, table=registry.ledger)


