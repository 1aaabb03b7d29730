"""The customer-account IAM work of create-role-for-me: cluster node roles created or adopted, and
what a failure leaves removed again (split from :mod:`activities.onboarding`)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities import verification
from activities.errors import CustomerActionRequired, error_code
from bridgehead import policies
from bridgehead.logging import get_logger

log = get_logger("bridgehead.activities.onboarding")


def customer_action(message: str) -> ApplicationError:
    return ApplicationError(message, type=CustomerActionRequired.__name__, non_retryable=True)


class CustomerRoleIam:
    """IAM calls made with the customer's one-time keys (``iam`` is their client)."""

    def _create_node_role(
        self, iam: Any, node: dict[str, Any], org_id: str, created: list[str]
    ) -> None:
        """Create one cluster node role with its policy and instance profile; adopt an existing one
        only when it trusts exactly EC2. A role it creates joins ``created`` at once, so a failure
        later (its policy, its instance profile) removes it too."""
        name = node["name"]
        try:
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(node["trust_policy"]),
                Description=f"Bridgehead cluster nodes of {org_id} in {node['region']}",
                Tags=[{"Key": policies.TAG_ORG, "Value": org_id}],
            )
            created.append(name)
        except ClientError as e:
            if error_code(e) != "EntityAlreadyExists":
                raise
            if self._get_trust(iam, name) != node["trust_policy"]:
                raise customer_action(
                    f"a role named {name} already exists with a trust policy other than EC2's; Bridgehead will not "
                    "take it over. Delete or rename it and try again."
                ) from None
        iam.put_role_policy(
            RoleName=name, PolicyName=node["policy_name"], PolicyDocument=json.dumps(node["policy"])
        )
        try:
            iam.create_instance_profile(
                InstanceProfileName=name, Tags=[{"Key": policies.TAG_ORG, "Value": org_id}]
            )
        except ClientError as e:
            if error_code(e) != "EntityAlreadyExists":
                raise
        roles = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"].get(
            "Roles", []
        )
        if not any(r["RoleName"] == name for r in roles):
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)

    @staticmethod
    def _delete_node_role(iam: Any, name: str) -> None:
        for call, kwargs in (
            (
                iam.remove_role_from_instance_profile,
                {"InstanceProfileName": name, "RoleName": name},
            ),
            (iam.delete_instance_profile, {"InstanceProfileName": name}),
            (iam.delete_role_policy, {"RoleName": name, "PolicyName": policies.NODE_POLICY_NAME}),
            (iam.delete_role, {"RoleName": name}),
        ):
            try:
                call(**kwargs)
            except ClientError:
                pass
        log.info("removed half-created node role", role=name)

    @staticmethod
    def _delete_role(iam: Any, name: str) -> None:
        for call, kwargs in (
            (iam.delete_role_policy, {"RoleName": name, "PolicyName": "bridgehead-permissions"}),
            (iam.delete_role, {"RoleName": name}),
        ):
            try:
                call(**kwargs)
            except ClientError:
                log.warning("could not delete half-created role", role=name)

    @staticmethod
    def _get_trust(iam: Any, role_name: str) -> dict[str, Any]:
        return verification.get_trust(iam, role_name)
