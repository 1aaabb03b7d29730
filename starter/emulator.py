"""The emulator's accounts (moto in server mode): clients acting as the platform or as a
customer's administrator, the platform role the embedded worker runs as, the bootstrap when moto
enforces IAM, and the seed (released images, a verified SES sender).

Used by :mod:`starter.local` (the embedded stack), the compose seed job and the tests.
"""

from __future__ import annotations

import json
from typing import Any

PLATFORM_ACCOUNT = "123456789012"  # moto's default account
DEFAULT_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
PLATFORM_ADMIN = "bridgehead-platform"  # the platform's IAM user when moto enforces IAM
#: The dedicated platform role the worker runs as (customers trust it, never the account root).
PLATFORM_ROLE = "bridgehead-platform"
DEMO_CUSTOMER_ACCOUNT = "211111111111"
SEARCH_ATTRIBUTES = ("OrgId", "ClusterName", "ClusterStatus", "Region")
SEED_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
)  # us-west-1 is left without an image: it gets copied


def _client(endpoint: str, service: str, region: str = "us-east-1", **creds: str | None) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=creds.get("aws_access_key_id") or "testing",
        aws_secret_access_key=creds.get("aws_secret_access_key") or "testing",
        aws_session_token=creds.get("aws_session_token"),
    ).client(service, region_name=region, endpoint_url=endpoint)


def platform_role_session(endpoint: str, creds: dict[str, str] | None = None) -> dict[str, str]:
    """Create the dedicated platform role in the platform account (idempotent) and return keys of
    a session of it: the embedded stack's worker runs as that role, as a production worker runs
    with its instance or task role."""
    iam = _client(endpoint, "iam", **(creds or {}))
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"AWS": f"arn:aws:iam::{PLATFORM_ACCOUNT}:root"},
            }
        ],
    }
    try:
        iam.create_role(
            RoleName=PLATFORM_ROLE,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="Bridgehead platform: the worker runs as this role; customers trust it",
        )
        iam.put_role_policy(RoleName=PLATFORM_ROLE, PolicyName="platform", PolicyDocument=ALLOW_ALL)
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    sts = _client(endpoint, "sts", **(creds or {}))
    c = sts.assume_role(
        RoleArn=f"arn:aws:iam::{PLATFORM_ACCOUNT}:role/{PLATFORM_ROLE}",
        RoleSessionName="worker",
        DurationSeconds=43200,
    )["Credentials"]
    return {
        "aws_access_key_id": c["AccessKeyId"],
        "aws_secret_access_key": c["SecretAccessKey"],
        "aws_session_token": c["SessionToken"],
    }


def _assume(endpoint: str, account: str, creds: dict[str, str] | None = None) -> dict[str, str]:
    sts = _client(endpoint, "sts", **(creds or {}))
    c = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
        RoleSessionName="customer-admin",
    )["Credentials"]
    return {
        "aws_access_key_id": c["AccessKeyId"],
        "aws_secret_access_key": c["SecretAccessKey"],
        "aws_session_token": c["SessionToken"],
    }


def customer_admin(
    endpoint: str,
    account: str,
    service: str,
    region: str = "us-east-1",
    creds: dict[str, str] | None = None,
) -> Any:
    """A client acting as the customer's administrator (moto maps the assumed role to ``account``)."""
    return _client(endpoint, service, region, **_assume(endpoint, account, creds))


ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def bootstrap_request_count(accounts: tuple[str, ...]) -> int:
    """Requests :func:`bootstrap_enforcement` makes before moto starts checking every call."""
    return 3 + 3 * len(accounts)


def bootstrap_enforcement(endpoint: str, accounts: tuple[str, ...]) -> dict[str, str]:
    """With moto enforcing IAM after the first few requests: create the platform's admin user (its
    keys are returned) and, in each customer account, the ``OrganizationAccountAccessRole`` a
    customer administrator acts through. Exactly :func:`bootstrap_request_count` requests."""
    iam = _client(endpoint, "iam")
    iam.create_user(UserName=PLATFORM_ADMIN)
    iam.put_user_policy(UserName=PLATFORM_ADMIN, PolicyName="admin", PolicyDocument=ALLOW_ALL)
    k = iam.create_access_key(UserName=PLATFORM_ADMIN)["AccessKey"]
    keys = {"aws_access_key_id": k["AccessKeyId"], "aws_secret_access_key": k["SecretAccessKey"]}
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRole",
                    "Principal": {"AWS": f"arn:aws:iam::{PLATFORM_ACCOUNT}:user/{PLATFORM_ADMIN}"},
                }
            ],
        }
    )
    for account in accounts:
        admin = _client(endpoint, "iam", **_assume(endpoint, account))
        admin.create_role(RoleName="OrganizationAccountAccessRole", AssumeRolePolicyDocument=trust)
        admin.put_role_policy(
            RoleName="OrganizationAccountAccessRole", PolicyName="admin", PolicyDocument=ALLOW_ALL
        )
    return keys


def seed_emulator(
    endpoint: str,
    regions: tuple[str, ...] = SEED_REGIONS,
    sender: str = "noreply@bridgehead.example.com",
    creds: dict[str, str] | None = None,
) -> dict[str, str]:
    """Released platform images (tagged) in ``regions`` of the platform account, and a verified
    SES sender. Idempotent. Returns region -> image id."""
    images: dict[str, str] = {}
    creds = creds or {}
    for region in regions:
        ec2 = _client(endpoint, "ec2", region, **creds)
        existing = ec2.describe_images(
            Owners=["self"], Filters=[{"Name": "tag:bridgehead:release", "Values": ["current"]}]
        )["Images"]
        if existing:
            images[region] = existing[0]["ImageId"]
            continue
        base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        inst = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")[
            "Instances"
        ][0]["InstanceId"]
        image = ec2.create_image(InstanceId=inst, Name="bridgehead-node-2026.11")["ImageId"]
        ec2.create_tags(Resources=[image], Tags=[{"Key": "bridgehead:release", "Value": "current"}])
        ec2.terminate_instances(InstanceIds=[inst])
        images[region] = image
    _client(endpoint, "ses", **creds).verify_email_identity(EmailAddress=sender)
    return images
