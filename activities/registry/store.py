"""The registry's storage primitives: item (de)serialisation, consistent reads, conditional
writes, transactions and the state-machine guarded :meth:`RegistryStore.transition`.

Only the typed record modules of :mod:`activities.registry` (and :class:`activities.ledger.Ledger`)
build on these; the key layout is documented in :mod:`activities.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.aws import Aws
from activities.errors import aws_errors, error_code
from bridgehead import metrics, transitions
from bridgehead.logging import get_logger

log = get_logger("activities.registry")

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


class RegistryStore:
    """Generic access to the registry and ledger tables (platform account)."""

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
        self,
        item: dict[str, Any],
        totals_key: tuple[str, str] | None,
        add: dict[str, Any],
        *,
        table: str,
        also: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Put ``item`` only if it does not exist *and* add ``add`` to the counters of the item at
        ``totals_key`` (none when None) *and* put the ``also`` items (index entries beside it), in
        one transaction: all happen exactly once, or (item already there) none. Returns False when
        the item existed."""
        names = {f"#a{i}": k for i, k in enumerate(add)}
        values = {f":a{i}": v for i, v in enumerate(add.values())}
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": table,
                    "Item": _to_item(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        if totals_key is not None and add:
            items.append(
                {
                    "Update": {
                        "TableName": table,
                        "Key": _to_item({"pk": totals_key[0], "sk": totals_key[1]}),
                        "UpdateExpression": "ADD "
                        + ", ".join(f"#a{i} :a{i}" for i in range(len(add))),
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": _to_item(values),
                    }
                }
            )
        items += [{"Put": {"TableName": table, "Item": _to_item(x)}} for x in also]
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
