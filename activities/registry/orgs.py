"""Registry records of organisations, their regional foundations and their image shares."""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

from activities.aws import OrgRecord, not_found
from activities.registry.store import RegistryStore, _to_item, org_pk
from bridgehead import ids


def _prefix_pk(org_id: str) -> str:
    """Marks an id as the hyphen prefix of registered organisations (``orgs``)."""
    return f"ORGPREFIX#{org_id}"


class OrgRecords(RegistryStore):
    """``ORG#<org>`` / ``META``, ``REGION#<region>``, ``IMAGE#<region>``; ``ACCOUNT#`` and
    ``EXTID#`` claims."""

    # --- organisations --------------------------------------------------------------------------
    def org(self, org_id: str) -> OrgRecord:
        item = self.org_item(org_id)
        if item is None:
            raise not_found(
                f"organisation {org_id!r} is not registered; start OnboardOrganization first"
            )
        return OrgRecord(
            org_id=org_id,
            aws_account_id=item["aws_account_id"],
            external_id=item["external_id"],
            role_arn=item.get("role_arn"),
            admin_email=item.get("admin_email", ""),
            display_name=item.get("display_name", ""),
            regions=list(item.get("regions", [])),
            state=item.get("state", ""),
            marketplace_customer_id=item.get("marketplace_customer_id"),
        )

    def org_item(self, org_id: str) -> dict[str, Any] | None:
        return self.get(org_pk(org_id), "META")

    def account_claim(self, aws_account_id: str) -> dict[str, Any] | None:
        """Which organisations (``orgs``) an AWS account belongs to, and whether it is ``shared``."""
        return self.get(f"ACCOUNT#{aws_account_id}", "META")

    def register_org(
        self, org_id: str, fields: dict[str, Any], *, shared_account: bool
    ) -> ApplicationError | None:
        """Write the organisation (``fields`` name its ``aws_account_id`` and ``external_id``), its
        External ID and its account's claim in one transaction. Refused (nothing written, the
        refusal returned) when the org id or the External ID exists (an External ID collision is a
        refusal, never a reuse), or the account belongs to another organisation, unless both say
        the account is shared."""
        item = {"pk": org_pk(org_id), "sk": "META", "org_id": org_id, **fields}
        account_claim = {
            "Update": {
                "TableName": self.table,
                "Key": _to_item({"pk": f"ACCOUNT#{fields['aws_account_id']}", "sk": "META"}),
                "UpdateExpression": "SET #sh = :sh ADD #orgs :org",
                "ConditionExpression": "attribute_not_exists(pk)"
                + (" OR #sh = :true" if shared_account else ""),
                "ExpressionAttributeNames": {"#sh": "shared", "#orgs": "orgs"},
                "ExpressionAttributeValues": {
                    ":sh": {"BOOL": shared_account},
                    ":org": {"SS": [org_id]},
                    **({":true": {"BOOL": True}} if shared_account else {}),
                },
            }
        }
        external_id = {"pk": f"EXTID#{fields['external_id']}", "sk": "META", "org_id": org_id}
        # Ids free of each other's hyphen prefixes (bridgehead.ids.hyphen_prefixes): no org is
        # registered under a prefix of this id, none extends it, and each prefix is marked as taken.
        prefixes = ids.hyphen_prefixes(org_id)
        not_there = "attribute_not_exists(pk)"
        namespace: list[dict[str, Any]] = [
            {
                "ConditionCheck": {
                    "TableName": self.table,
                    "Key": _to_item({"pk": key, "sk": "META"}),
                    "ConditionExpression": not_there,
                }
            }
            for key in [*(org_pk(p) for p in prefixes), _prefix_pk(org_id)]
        ] + [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": _to_item({"pk": _prefix_pk(p), "sk": "META"}),
                    "UpdateExpression": "ADD #orgs :org",
                    "ExpressionAttributeNames": {"#orgs": "orgs"},
                    "ExpressionAttributeValues": {":org": {"SS": [org_id]}},
                }
            }
            for p in prefixes
        ]
        return self._transact(
            "register organisation",
            [
                *namespace,
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _to_item(item),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _to_item(external_id),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                account_claim,
            ],
        )

    def org_id_conflict(self, org_id: str) -> str | None:
        """A registered organisation whose id is a hyphen prefix of ``org_id`` or extends it
        (:func:`bridgehead.ids.hyphen_prefixes`), if any."""
        for p in ids.hyphen_prefixes(org_id):
            if self.org_item(p) is not None:
                return p
        extending = self.get(_prefix_pk(org_id), "META")
        return sorted(extending["orgs"])[0] if extending else None

    def put_org(self, org_id: str, fields: dict[str, Any]) -> None:
        """Write an organisation as given, unconditionally (seeding for benchmarks; onboarding
        uses :meth:`register_org`)."""
        self.put({"pk": org_pk(org_id), "sk": "META", "org_id": org_id, **fields})

    def record_org_role(
        self, org_id: str, role_arn: str, changed_at: str, *, only_in: list[str]
    ) -> bool:
        """Store the org's role ARN, only while its state is one of ``only_in`` (False otherwise)."""
        allowed = {f":s{i}": s for i, s in enumerate(only_in)}
        fields = {"role_arn": role_arn, "role_changed_at": changed_at}
        condition = f"#s IN ({', '.join(allowed)})"
        return self.update(
            org_pk(org_id),
            "META",
            fields,
            condition=condition,
            names={"#s": "state"},
            values=allowed,
        )

    def transition_org(self, org_id: str, target: str, fields: dict[str, Any]) -> None:
        """Move the organisation to ``target`` (:meth:`transition`)."""
        self.transition("org", org_pk(org_id), "META", target, fields, subject=org_id)

    # --- foundations and image shares -----------------------------------------------------------
    def foundation(self, org_id: str, region: str) -> dict[str, Any] | None:
        return self.get(org_pk(org_id), f"REGION#{region}")

    def foundations(self, org_id: str) -> list[dict[str, Any]]:
        """Every regional foundation of the organisation (consistent read)."""
        return self.query(org_pk(org_id), "REGION#")

    def transition_foundation(
        self, org_id: str, region: str, target: str, fields: dict[str, Any]
    ) -> None:
        """Move the regional foundation to ``target`` (:meth:`transition`)."""
        self.transition(
            "foundation",
            org_pk(org_id),
            f"REGION#{region}",
            target,
            fields,
            subject=f"{org_id}/{region}",
        )

    def revert_foundation_delete(self, org_id: str, region: str, state: str) -> bool:
        """Put back ``state`` on a foundation, only from DELETING (the one reverse step the state
        machine allows: a refused cleanup undoing its own mark)."""
        return self.update(
            org_pk(org_id),
            f"REGION#{region}",
            {"state": state},
            condition="#s = :d",
            names={"#s": "state"},
            values={":d": "DELETING"},
        )

    def image_share(self, org_id: str, region: str) -> dict[str, Any] | None:
        return self.get(org_pk(org_id), f"IMAGE#{region}")

    def put_image_share(self, org_id: str, region: str, fields: dict[str, Any]) -> None:
        self.put({"pk": org_pk(org_id), "sk": f"IMAGE#{region}", "region": region, **fields})

    def update_image_share(self, org_id: str, region: str, fields: dict[str, Any]) -> None:
        self.update(org_pk(org_id), f"IMAGE#{region}", fields)
