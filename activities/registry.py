"""The platform registry (DynamoDB in the platform account): the one module that knows its keys.

Holds what several workflows must read consistently: organisations, regional foundations, image
shares, clusters, drop-box users, notification markers and Marketplace links. Safety decisions read
it with ``ConsistentRead=True`` and write with conditional expressions; workflow visibility
(eventually consistent) is never used for them. Callers use the typed methods below; the generic
primitives (``get``, ``put``, ``update``, ``query``, ``delete``, ``put_new_and_add``) serve them and
:class:`activities.ledger.Ledger`, which owns the ledger table's keys the same way.

Layout (single table, ``pk``/``sk``):
    ORG#<org>              META              organisation (account, role, External ID, state)
    ORG#<org>              REGION#<region>   regional foundation (stack, outputs, state)
    ORG#<org>              IMAGE#<region>    image shared in that region (image, snapshots)
    ORG#<org>              CLUSTER#<name>    cluster (region, state, usage segments)
    ORG#<org>              MARKETPLACE       the org's Marketplace buyer and billing state
    ACCOUNT#<id>           META              which organisations an AWS account belongs to
    EXTID#<external id>    META              External ID -> org (never reused)
    MPCUSTOMER#<id>        META              Marketplace customer identifier -> org (unique)
    DROPBOX#<user>         META              drop-box user -> org and owner
    NOTIFY#<key>           META              an email sent (at most once per key)
State writes go through :meth:`Registry.transition` (the state machine in
:mod:`bridgehead.transitions`). Ledger table: see :mod:`activities.ledger`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.aws import Aws, OrgRecord, not_found
from activities.errors import aws_errors, error_code
from bridgehead import metrics, transitions
from bridgehead.logging import get_logger

log = get_logger(__name__)

_ser = TypeSerializer()
_de = TypeDeserializer()


def _to_item(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(_dynamo_safe(v)) for k, v in d.items() if v is not None}


def _dynamo_safe(v: Any) -> Any:
    if isinstance(v, float):
        return Decimal(str(v))
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat()
    if isinstance(v, dict):
        return {k: _dynamo_safe(x) for k, x in v.items() if x is not None}
    if isinstance(v, list | tuple):
        return [_dynamo_safe(x) for x in v]
    return v


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def org_pk(org_id: str) -> str:
    """The partition of an organisation's items, in the registry and in the ledger."""
    return f"ORG#{org_id}"


class Registry:
    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self.table = aws.settings.registry_table
        self.ledger = aws.settings.ledger_table

    @property
    def ddb(self) -> Any:
        return self.aws.platform("dynamodb")

    # --- set-up -------------------------------------------------------------------------------
    def ensure_tables(self) -> None:
        """Create the registry and ledger tables if missing (idempotent)."""
        for name in (self.table, self.ledger):
            try:
                self.ddb.create_table(
                    TableName=name,
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
                self.ddb.get_waiter("table_exists").wait(
                    TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
                )
            except ClientError as e:
                if error_code(e) != "ResourceInUseException":
                    raise

    # --- generic --------------------------------------------------------------------------------
    def get(self, pk: str, sk: str, table: str | None = None) -> dict[str, Any] | None:
        with aws_errors("registry read"):
            resp = self.ddb.get_item(
                TableName=table or self.table,
                Key=_to_item({"pk": pk, "sk": sk}),
                ConsistentRead=True,
            )
        return _from_item(resp["Item"]) if "Item" in resp else None

    def put(
        self,
        item: dict[str, Any],
        *,
        condition: str | None = None,
        table: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """Put an item; with ``condition``, returns False instead of raising when it does not hold."""
        kwargs: dict[str, Any] = {"TableName": table or self.table, "Item": _to_item(item)}
        if condition:
            kwargs["ConditionExpression"] = condition
        if values:
            kwargs["ExpressionAttributeValues"] = _to_item(values)
        return self._conditional("registry write", self.ddb.put_item, kwargs)

    def update(
        self,
        pk: str,
        sk: str,
        fields: dict[str, Any],
        *,
        condition: str | None = None,
        table: str | None = None,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> bool:
        """Set (``None``: remove) ``fields``; with ``condition`` (which may use ``names`` and
        ``values``), returns False instead of raising when it does not hold."""
        extra_values = values or {}
        names = {**(names or {}), **{f"#f{i}": k for i, k in enumerate(fields)}}
        values = {f":v{i}": v for i, v in enumerate(fields.values())}
        sets = [f"#f{i} = :v{i}" for i, (k, v) in enumerate(fields.items()) if v is not None]
        removes = [f"#f{i}" for i, (k, v) in enumerate(fields.items()) if v is None]
        expr = ""
        if sets:
            expr += "SET " + ", ".join(sets)
        if removes:
            expr += " REMOVE " + ", ".join(removes)
        kwargs: dict[str, Any] = {
            "TableName": table or self.table,
            "Key": _to_item({"pk": pk, "sk": sk}),
            "UpdateExpression": expr.strip(),
            "ExpressionAttributeNames": names,
        }
        vals = {**{k: v for k, v in values.items() if v is not None}, **extra_values}
        if vals:
            kwargs["ExpressionAttributeValues"] = _to_item(vals)
        if condition:
            kwargs["ConditionExpression"] = condition
        return self._conditional("registry update", self.ddb.update_item, kwargs)

    def transition(
        self,
        kind: str,
        pk: str,
        sk: str,
        target: str,
        fields: dict[str, Any] | None = None,
        *,
        subject: str,
        require: dict[str, Any] | None = None,
    ) -> None:
        """Write ``target`` as the record's ``state`` (with ``fields``) only if its current state is
        one the state machine allows before ``target`` (:mod:`bridgehead.transitions`), and every
        ``require`` attribute has the given value. Refused: ``IllegalTransition`` (non-retryable),
        counted in ``bridgehead_illegal_transitions``; nothing is written."""
        priors = transitions.allowed_priors(kind, target)
        names = {"#state": "state"}
        values: dict[str, Any] = {}
        alts = []
        if None in priors:
            alts.append("attribute_not_exists(#state)")
        known = sorted(p for p in priors if p is not None)
        if known:
            values.update({f":p{i}": p for i, p in enumerate(known)})
            alts.append("#state IN (" + ", ".join(f":p{i}" for i in range(len(known))) + ")")
        condition = (
            "(" + " OR ".join(alts or ["attribute_not_exists(pk) AND attribute_exists(pk)"]) + ")"
        )
        for i, (k, v) in enumerate((require or {}).items()):
            names[f"#r{i}"] = k
            values[f":r{i}"] = v
            condition += f" AND #r{i} = :r{i}"
        if None not in priors:
            condition += " AND attribute_exists(pk)"
        sets = {"state": target, **(fields or {})}
        assign = {f"#f{i}": k for i, k in enumerate(sets)}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": _to_item({"pk": pk, "sk": sk}),
            "UpdateExpression": "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(sets))),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {**names, **assign},
            "ExpressionAttributeValues": _to_item(
                {**values, **{f":f{i}": v for i, v in enumerate(sets.values())}}
            ),
        }
        if self._conditional(f"registry {kind} state", self.ddb.update_item, kwargs):
            return
        current = self.get(pk, sk)
        prior = (current or {}).get("state")
        mismatch = [
            k for k, v in (require or {}).items() if current is not None and current.get(k) != v
        ]
        metrics.count("bridgehead_illegal_transitions", kind=kind, target=target)
        if mismatch and transitions.is_allowed(kind, prior, target):
            text = f"{kind} {subject}: the record belongs to another {', '.join(mismatch)}; nothing was changed"
        else:
            text = transitions.refusal(kind, subject, prior, target)
        log.warning(
            "illegal registry transition refused",
            kind=kind,
            subject=subject,
            prior=prior,
            target=target,
        )
        raise ApplicationError(
            text, type=transitions.IllegalTransition.__name__, non_retryable=True
        )

    def put_new_and_add(
        self, item: dict[str, Any], totals_key: tuple[str, str], add: dict[str, Any], *, table: str
    ) -> bool:
        """Put ``item`` only if it does not exist *and* add ``add`` to the counters of the item at
        ``totals_key``, in one transaction: both happen exactly once, or (item already there)
        neither. Returns False when the item existed."""
        names = {f"#a{i}": k for i, k in enumerate(add)}
        values = {f":a{i}": v for i, v in enumerate(add.values())}
        items = [
            {
                "Put": {
                    "TableName": table,
                    "Item": _to_item(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": table,
                    "Key": _to_item({"pk": totals_key[0], "sk": totals_key[1]}),
                    "UpdateExpression": "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(add))),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": _to_item(values),
                }
            },
        ]
        with aws_errors("ledger write"):
            try:
                self.ddb.transact_write_items(TransactItems=items)
            except ClientError as e:
                reasons = [r.get("Code") for r in e.response.get("CancellationReasons", [])]
                if (
                    error_code(e) == "TransactionCanceledException"
                    and reasons
                    and reasons[0] == "ConditionalCheckFailed"
                ):
                    return False
                raise
        return True

    @staticmethod
    def _conditional(action: str, call: Any, kwargs: dict[str, Any]) -> bool:
        """Run a write; False when its condition does not hold, other failures classified."""
        with aws_errors(action):
            try:
                call(**kwargs)
            except ClientError as e:
                if error_code(e) == "ConditionalCheckFailedException":
                    return False
                raise
        return True

    def delete(self, pk: str, sk: str, table: str | None = None) -> None:
        """Delete an item (idempotent: deleting a missing item succeeds)."""
        with aws_errors("registry delete"):
            self.ddb.delete_item(TableName=table or self.table, Key=_to_item({"pk": pk, "sk": sk}))

    def query(self, pk: str, prefix: str, table: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": table or self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": _to_item({":pk": pk, ":p": prefix}),
            "ConsistentRead": True,
        }
        with aws_errors("registry query"):
            while True:
                resp = self.ddb.query(**kwargs)
                items.extend(_from_item(i) for i in resp.get("Items", []))
                if "LastEvaluatedKey" not in resp:
                    return items
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _transact(self, action: str, items: list[dict[str, Any]]) -> ApplicationError | None:
        """Write ``items`` in one transaction. Returns None when written, or the classified refusal
        (the transaction was cancelled: nothing was written) for the caller to chain as a cause;
        other failures raise, classified by :func:`activities.errors.aws_errors`."""
        try:
            with aws_errors(action):
                self.ddb.transact_write_items(TransactItems=items)
        except ApplicationError as e:
            cause = e.__cause__
            if (
                isinstance(cause, ClientError)
                and error_code(cause) == "TransactionCanceledException"
            ):
                return e
            raise
        return None

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
        return self._transact(
            "register organisation",
            [
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

    def put_org(self, org_id: str, fields: dict[str, Any]) -> None:
        """Write an organisation as given, unconditionally (seeding for benchmarks; onboarding
        uses :meth:`register_org`)."""
        self.put({"pk": org_pk(org_id), "sk": "META", "org_id": org_id, **fields})

    def set_org_budget(self, org_id: str, fields: dict[str, Any]) -> None:
        """Set the organisation's budget fields (``monthly_budget_usd``, ``budget_action``) on its
        existing record."""
        self.update(org_pk(org_id), "META", fields, condition="attribute_exists(pk)")

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

    # --- clusters -------------------------------------------------------------------------------
    def clusters(self, org_id: str) -> list[dict[str, Any]]:
        return self.query(org_pk(org_id), "CLUSTER#")

    def cluster(self, org_id: str, name: str) -> dict[str, Any] | None:
        return self.get(org_pk(org_id), f"CLUSTER#{name}")

    def create_cluster(
        self, org_id: str, name: str, region: str, fields: dict[str, Any], run_id: str
    ) -> ApplicationError | None:
        """Write a new cluster record, in one transaction with the check that the region's
        foundation is READY (so it cannot race with CleanupRegion). Refused (nothing written, the
        refusal returned) when the foundation is not READY or a cluster of that name exists that
        is not DELETED or CANCELLED and was not written by this run (``run_id``)."""
        pk = org_pk(org_id)
        return self._transact(
            "register cluster",
            [
                {
                    "ConditionCheck": {
                        "TableName": self.table,
                        "Key": _to_item({"pk": pk, "sk": f"REGION#{region}"}),
                        "ConditionExpression": "#s = :ready",
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": _to_item({":ready": "READY"}),
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _to_item({"pk": pk, "sk": f"CLUSTER#{name}", **fields}),
                        "ConditionExpression": "attribute_not_exists(pk) OR workflow_run = :run OR #s IN (:d, :c)",
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": _to_item(
                            {":run": run_id, ":d": "DELETED", ":c": "CANCELLED"}
                        ),
                    }
                },
            ],
        )

    def transition_cluster(
        self, org_id: str, name: str, target: str, fields: dict[str, Any], *, workflow_id: str
    ) -> None:
        """Move the cluster to ``target`` (:meth:`transition`), only if ``workflow_id`` owns it."""
        self.transition(
            "cluster",
            org_pk(org_id),
            f"CLUSTER#{name}",
            target,
            fields,
            subject=f"{org_id}/{name}",
            require={"workflow_id": workflow_id},
        )

    def update_cluster(self, org_id: str, name: str, fields: dict[str, Any]) -> None:
        """Set attributes of a cluster that are not its state (billing bookkeeping)."""
        self.update(org_pk(org_id), f"CLUSTER#{name}", fields)

    def put_cluster(self, org_id: str, name: str, fields: dict[str, Any]) -> None:
        """Write a cluster as given, unconditionally (seeding for benchmarks; clusters use
        :meth:`create_cluster` and :meth:`transition_cluster`)."""
        self.put({"pk": org_pk(org_id), "sk": f"CLUSTER#{name}", **fields})

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
