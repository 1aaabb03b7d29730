"""Registry records that point at an organisation from outside it: drop-box users, e-mail
notification markers and the Marketplace link."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from activities.registry.store import RegistryStore, org_pk


class LinkRecords(RegistryStore):
    """``DROPBOX#<user>``, ``NOTIFY#<key>``, ``MPCUSTOMER#<id>``, ``MPNOTICE#<id>`` and
    ``ORG#<org>`` / ``MARKETPLACE``."""

    # --- drop-box users and notification markers ------------------------------------------------
    def dropbox_user(self, user: str) -> dict[str, Any] | None:
        """The drop-box user's ``org_id`` and ``owner``, or None (not registered)."""
        return self.get(f"DROPBOX#{user}", "META")

    def put_dropbox_user(self, user: str, org_id: str, owner: str) -> None:
        self.put(
            {"pk": f"DROPBOX#{user}", "sk": "META", "user": user, "org_id": org_id, "owner": owner}
        )

    def notification(self, key: str) -> dict[str, Any] | None:
        """The record of the email sent with this idempotency key, or None."""
        return self.get(f"NOTIFY#{key}", "META")

    def record_notification(self, key: str, to: str, subject: str, sent_at: str) -> None:
        self.put(
            {"pk": f"NOTIFY#{key}", "sk": "META", "to": to, "subject": subject, "sent_at": sent_at}
        )

    # --- Marketplace notifications as received ----------------------------------------------------
    def record_marketplace_notice(self, message_id: str, fields: dict[str, Any]) -> None:
        """What the platform's notification queue delivered (``action``, ``customer_identifier``,
        ``product_code``, ``org_id``): the proof a ``notification`` signal is checked against.
        An update, not a put: a redelivery of the message keeps the run that applied it
        (``applied_by``), so an old notice delivered again is still refused to a later run."""
        self.update(f"MPNOTICE#{message_id}", "META", fields)

    def marketplace_notice(self, message_id: str) -> dict[str, Any] | None:
        return self.get(f"MPNOTICE#{message_id}", "META")

    def apply_marketplace_notice(self, message_id: str, run_id: str) -> bool:
        """Mark a delivered notice applied by the subscription run ``run_id``: once, by one run
        (a retry of the same run's write holds). False when another run applied it: an old
        notice signalled again to a later subscription."""
        return self.update(
            f"MPNOTICE#{message_id}",
            "META",
            {"applied_by": run_id},
            condition="attribute_exists(pk) AND (attribute_not_exists(#a) OR #a = :r)",
            names={"#a": "applied_by"},
            values={":r": run_id},
        )

    # --- Marketplace link -----------------------------------------------------------------------
    def marketplace(self, org_id: str) -> dict[str, Any] | None:
        """The organisation's Marketplace link and billing state, or None (never linked)."""
        return self.get(org_pk(org_id), "MARKETPLACE")

    def marketplace_org(self, customer_identifier: str) -> str | None:
        """The organisation a Marketplace customer is linked to."""
        item = self.get(f"MPCUSTOMER#{customer_identifier}", "META")
        return item["org_id"] if item else None

    def link_marketplace(self, org_id: str, link: dict[str, Any]) -> bool:
        """Record the org's Marketplace buyer. One buyer links to one organisation: False (nothing
        written) when the customer is already linked to another organisation."""
        customer = link["customer_identifier"]
        owner = {"pk": f"MPCUSTOMER#{customer}", "sk": "META", "org_id": org_id}
        if not self.put(
            owner, condition="attribute_not_exists(pk) OR org_id = :org", values={":org": org_id}
        ):
            return False
        self.put({"pk": org_pk(org_id), "sk": "MARKETPLACE", "org_id": org_id, **link})
        return True

    def set_marketplace_state(
        self,
        org_id: str,
        state: str,
        reason: str,
        at: datetime,
        *,
        only_from: list[str] | None = None,
    ) -> bool:
        """Move the org's Marketplace state; with ``only_from``, only from one of those states."""
        fields = {
            "state": state,
            "state_reason": reason,
            "state_at": at.astimezone(UTC).isoformat(),
        }
        condition = "attribute_exists(pk)"
        states = {f":s{i}": s for i, s in enumerate(only_from or [])}
        if states:
            condition += f" AND #f0 IN ({', '.join(states)})"  # #f0: the first field, "state"
        return self.update(
            org_pk(org_id), "MARKETPLACE", fields, condition=condition, values=states or None
        )
