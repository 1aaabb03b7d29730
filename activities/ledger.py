"""The billing ledger (its own DynamoDB table in the platform account): the one module that knows
its keys, built on the registry's generic primitives (:class:`activities.registry.Registry`).

Layout (``pk``/``sk``):
    ORG#<org>  PERIOD#<iso hour>#<cluster>                  a cluster's usage in an hourly period
    ORG#<org>  PERIOD#<iso hour>#<cluster>#<start>-<end>    a part of an hour (a final metering
                                                            closed it mid-hour)
    ORG#<org>  TOTALS                                       node_minutes, cost_usd, entries,
                                                            corrections of every item below
    ORG#<org>  CORRECTION#<iso hour>#<cluster>#<id>         an operator's correction of a period
    ORG#<org>  METER#<iso hour>                             a Marketplace usage batch (one per
                                                            clock hour; ``hour`` holds its record
                                                            timestamp; older batches are keyed by
                                                            their timestamp)
    ORG#<org>  METER-LEASE                                  one metering attempt per org at a time
    ORG#<org>  UNMETERED#<entry sk>                         index: an entry no batch has settled
                                                            (its ``lines`` and ``period_start``)
    ORG#<org>  OPEN#<batch sk>                              index: a batch still to send or carry
    ORG#<org>  METER-INDEX                                  the two indexes exist (built once from
                                                            a ledger written before them)

A metering tick reads only the two indexes, so it costs the same after years of usage as after an
hour. Index items are written in the same transaction as what they index, and removed only after
what they index is settled (an entry's flag before its marker; a batch's entries before the batch
leaves PENDING), so a crash at any point leaves at most a stale marker, which the next tick drops,
never a missing one.

Entries and corrections are written exactly once, together with their share of ``TOTALS``, and
never changed afterwards except for their metering flags. Callers name an entry or a batch by the
``sk`` the ledger gave it (batches list their entries that way).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from activities.registry import Registry, org_pk
from bridgehead import billing

#: The lease item of an organisation's metering (one attempt at a time).
_LEASE = "METER-LEASE"
_TOTALS = "TOTALS"
_INDEXED = "METER-INDEX"
_UNMETERED = "UNMETERED#"
_OPEN = "OPEN#"


class Ledger:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.table = registry.ledger

    # --- periods --------------------------------------------------------------------------------
    def add_entry(
        self,
        org_id: str,
        cluster: str,
        period: datetime,
        window: tuple[datetime, datetime],
        fields: dict[str, Any],
    ) -> bool:
        """Write the usage of ``cluster`` in ``window`` (within the hour ``period``) and add its
        ``node_minutes`` and ``cost_usd`` to the totals, exactly once: False (nothing written)
        when the entry exists. A whole hour keeps its historical key; a part of an hour (a final
        metering closed it mid-hour) is keyed by its bounds, so both parts exist exactly once."""
        sk = f"PERIOD#{period.isoformat()}#{cluster}"
        start, end = window
        if (start, end) != (period, period + billing.PERIOD):
            sk += f"#{start.isoformat()}-{end.isoformat()}"
        item = {"pk": org_pk(org_id), "sk": sk, "cluster": cluster, **fields}
        add = {"node_minutes": fields["node_minutes"], "cost_usd": fields["cost_usd"], "entries": 1}
        marker = _unmetered_marker(item)
        return self.registry.put_new_and_add(
            item, (org_pk(org_id), _TOTALS), add, table=self.table, also=[marker]
        )

    def entries(self, org_id: str, month: str | None = None) -> list[dict[str, Any]]:
        """Ledger entries of an org, optionally of one ``YYYY-MM``."""
        return self.registry.query(org_pk(org_id), f"PERIOD#{month or ''}", table=self.table)

    def period_entries(self, org_id: str, period: datetime, cluster: str) -> list[dict[str, Any]]:
        """The entries of ``cluster`` in the hour starting at ``period`` (whole or in parts)."""
        found = self.registry.query(
            org_pk(org_id), f"PERIOD#{period.isoformat()}#{cluster}", table=self.table
        )
        return [e for e in found if e["cluster"] == cluster]

    def settle_entry(self, org_id: str, sk: str, flags: dict[str, Any]) -> None:
        """Set an entry's metering flags (``sk`` as the ledger gave it), then drop it from the
        unmetered index: no batch will hold it again."""
        self.registry.update(org_pk(org_id), sk, flags, table=self.table)
        self.registry.delete(org_pk(org_id), _UNMETERED + sk, table=self.table)

    def unmetered(self, org_id: str) -> list[dict[str, Any]]:
        """The unmetered index: per entry no batch has settled, ``entry`` (its sk), ``lines`` and
        ``period_start``."""
        return self.registry.query(org_pk(org_id), _UNMETERED, table=self.table)

    def forget_unmetered(self, org_id: str, entry_sk: str) -> None:
        """Drop an entry from the unmetered index without flagging it (it is never metered: usage
        from before the Marketplace link; the report lists it from the entry itself)."""
        self.registry.delete(org_pk(org_id), _UNMETERED + entry_sk, table=self.table)

    def totals(self, org_id: str) -> dict[str, Any]:
        """The org's running totals (empty before its first entry)."""
        return self.registry.get(org_pk(org_id), _TOTALS, table=self.table) or {}

    # --- corrections ----------------------------------------------------------------------------
    @staticmethod
    def _period_prefix(period: datetime, cluster: str) -> str:
        return f"{period.isoformat()}#{cluster}#"

    def corrections(self, org_id: str, month: str | None = None) -> list[dict[str, Any]]:
        """Corrections of an org, optionally of periods in one ``YYYY-MM``."""
        return self.registry.query(org_pk(org_id), f"CORRECTION#{month or ''}", table=self.table)

    def period_corrections(
        self, org_id: str, period: datetime, cluster: str
    ) -> list[dict[str, Any]]:
        """Corrections of ``cluster`` in the hour starting at ``period``."""
        prefix = f"CORRECTION#{self._period_prefix(period, cluster)}"
        return self.registry.query(org_pk(org_id), prefix, table=self.table)

    def correction(
        self, org_id: str, period: datetime, cluster: str, correction_id: str
    ) -> dict[str, Any] | None:
        sk = f"CORRECTION#{self._period_prefix(period, cluster)}{correction_id}"
        return self.registry.get(org_pk(org_id), sk, table=self.table)

    def add_correction(
        self,
        org_id: str,
        period: datetime,
        cluster: str,
        correction_id: str,
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        """Write a correction and add its ``node_minutes_delta`` and ``cost_usd_delta`` to the
        totals, exactly once per correction id. Returns the correction as recorded (the earlier
        one when this id was recorded before)."""
        sk = f"CORRECTION#{self._period_prefix(period, cluster)}{correction_id}"
        item = {"pk": org_pk(org_id), "sk": sk, "correction_id": correction_id, **fields}
        add = {
            "node_minutes": fields["node_minutes_delta"],
            "cost_usd": fields["cost_usd_delta"],
            "corrections": 1,
        }
        if not self.registry.put_new_and_add(
            item, (org_pk(org_id), _TOTALS), add, table=self.table
        ):
            item = self.registry.get(org_pk(org_id), sk, table=self.table) or item
        return item

    # --- Marketplace batches --------------------------------------------------------------------
    def batches(self, org_id: str) -> list[dict[str, Any]]:
        """Every batch ever written (reports and the one-time index build; never a tick)."""
        return self.registry.query(org_pk(org_id), "METER#", table=self.table)

    def open_batches(self, org_id: str) -> list[dict[str, Any]]:
        """The batches in the open index (still to send, or an expired rest still to carry), as
        stored now, oldest first."""
        opened = self.registry.query(org_pk(org_id), _OPEN, table=self.table)
        found = [self.registry.get(org_pk(org_id), o["batch"], table=self.table) for o in opened]
        return [b for b in found if b is not None]

    def add_batch(
        self, org_id: str, stamp: datetime, fields: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Write a new batch timestamped ``stamp``, open: at most one per clock hour (keyed by the
        hour; Marketplace keeps one record per customer, dimension and hour); None when this hour
        has one."""
        hour = billing.floor_hour(stamp)
        batch = {"pk": org_pk(org_id), "sk": f"METER#{hour.isoformat()}", **fields}
        marker = {"pk": org_pk(org_id), "sk": _OPEN + batch["sk"], "batch": batch["sk"]}
        if not self.registry.put_new_and_add(batch, None, {}, table=self.table, also=[marker]):
            return None
        return batch

    def close_batch(self, org_id: str, sk: str) -> None:
        """Drop a batch from the open index (sent, flagged, or its rest carried by another)."""
        self.registry.delete(org_pk(org_id), _OPEN + sk, table=self.table)

    def update_batch(self, org_id: str, sk: str, fields: dict[str, Any]) -> None:
        self.registry.update(org_pk(org_id), sk, fields, table=self.table)

    def index_once(self, org_id: str) -> bool:
        """Build both indexes from the whole partition, once per organisation whose ledger was
        written before they existed (True when built now). Entries held by a batch that is
        settled (sent, flagged or expired) are not unmetered; a batch is open while pending or
        while its expired rest is carried by no other batch."""
        if self.registry.get(org_pk(org_id), _INDEXED, table=self.table) is not None:
            return False
        batches = self.batches(org_id)
        settled = {
            sk for b in batches if b.get("status") != "PENDING" for sk in b.get("entries", [])
        }
        claimed = {sk for b in batches for sk in b.get("carries", [])}
        for e in self.entries(org_id):
            if not e.get("metered") and not e.get("metering_defects") and e["sk"] not in settled:
                self.registry.put(_unmetered_marker(e), table=self.table)
        for b in batches:
            carried = b.get("status") == "EXPIRED" and b.get("carry") and b["sk"] not in claimed
            if b.get("status") == "PENDING" or carried:
                marker = {"pk": org_pk(org_id), "sk": _OPEN + b["sk"], "batch": b["sk"]}
                self.registry.put(marker, table=self.table)
        done = {"pk": org_pk(org_id), "sk": _INDEXED, "built_at": datetime.now(UTC).isoformat()}
        self.registry.put(done, table=self.table)
        return True

    # --- the metering lease ---------------------------------------------------------------------
    def take_lease(self, org_id: str, holder: str, now: datetime, expires: datetime) -> bool:
        """Hold the org's metering lease until ``expires``: False when another holder has it and
        it has not expired (the same holder takes it again)."""
        item = {
            "pk": org_pk(org_id),
            "sk": _LEASE,
            "lease_holder": holder,
            "lease_expires": expires.isoformat(),
        }
        return self.registry.put(
            item,
            condition="attribute_not_exists(pk) OR lease_expires < :now OR lease_holder = :me",
            values={":now": now.isoformat(), ":me": holder},
            table=self.table,
        )

    def lease(self, org_id: str) -> dict[str, Any]:
        """The lease as stored (``lease_holder``, ``lease_expires``), empty when never taken."""
        return self.registry.get(org_pk(org_id), _LEASE, table=self.table) or {}

    def release_lease(self, org_id: str, holder: str) -> None:
        """Let the lease expire now, if ``holder`` still has it."""
        expired = datetime.min.replace(tzinfo=UTC).isoformat()
        item = {
            "pk": org_pk(org_id),
            "sk": _LEASE,
            "lease_holder": holder,
            "lease_expires": expired,
        }
        self.registry.put(
            item, condition="lease_holder = :me", values={":me": holder}, table=self.table
        )


def _unmetered_marker(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "pk": entry["pk"],
        "sk": _UNMETERED + entry["sk"],
        "entry": entry["sk"],
        "lines": entry["lines"],
        "period_start": entry["period_start"],
    }
