"""Customer clients are built from the worker's one shared boto3 session (activities/aws.py):
botocore's endpoint data and service models are read from disk once per process, not once per
organisation (docs/benchmarks.md: building a new organisation's clients was about 40 % of the
worker's CPU in the overhead benchmark). Each client still signs with its own credentials.

Twin: a new ``boto3.Session`` per set of credentials, as before, reads the files again."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.loaders
import pytest

from activities.aws import Aws, OrgRecord
from bridgehead.settings import Settings

REGION = "eu-west-1"


def creds(n: int) -> dict[str, str]:
    return {
        "aws_access_key_id": f"ASIAEXAMPLE{n:09d}",
        "aws_secret_access_key": f"secret-{n}",
        "aws_session_token": f"token-{n}",
    }


@pytest.fixture
def files_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every botocore data file read from disk from now on."""
    read: list[str] = []
    real = botocore.loaders.JSONFileLoader.load_file

    def load_file(self: Any, file_path: str) -> Any:
        read.append(file_path)
        return real(self, file_path)

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", load_file)
    return read


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Aws:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "platform")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "platform")
    return Aws(Settings(platform_principal_arn="arn:aws:iam::111111111111:role/bridgehead"))


def access_key(client: Any) -> str:
    return str(client._request_signer._credentials.access_key)


def test_a_second_set_of_credentials_reads_no_model_again(aws, files_read):
    first = aws.client_with(creds(1), "cloudformation", REGION)
    assert files_read, "the first client reads the endpoint data and the model"
    files_read.clear()
    second = aws.client_with(creds(2), "cloudformation", REGION)
    assert files_read == []
    assert (access_key(first), access_key(second)) == (
        creds(1)["aws_access_key_id"],
        creds(2)["aws_access_key_id"],
    )


def test_each_organisation_s_customer_clients_share_the_models(aws, files_read, monkeypatch):
    assumed: list[str] = []

    def assume(role_arn: str, external_id: str | None, session_name: str) -> dict[str, str]:
        assumed.append(role_arn)
        return creds(len(assumed))

    monkeypatch.setattr(aws, "assume", assume)

    def org(n: int) -> OrgRecord:
        return OrgRecord(
            org_id=f"org{n}",
            aws_account_id=f"{n:012d}",
            external_id=f"ext-{n}",
            role_arn=f"arn:aws:iam::{n:012d}:role/bridgehead-access",
            admin_email="ops@example.com",
            display_name="Org",
            regions=[REGION],
            state="READY",
        )

    a = aws.customer(org(1), "cloudformation", REGION)
    files_read.clear()
    b = aws.customer(org(2), "cloudformation", REGION)
    assert files_read == []
    assert access_key(a) != access_key(b) == creds(2)["aws_access_key_id"]
    assert (
        aws.customer(org(2), "cloudformation", REGION) is b
    )  # cached until the credentials expire


def test_a_verification_session_builds_its_clients_the_same_way(aws, files_read):
    aws.client_with(creds(1), "ec2", REGION)
    files_read.clear()
    ec2 = aws.session_for(creds(3)).client("ec2")
    assert files_read == []
    assert access_key(ec2) == creds(3)["aws_access_key_id"]
    assert ec2.meta.region_name == aws.settings.platform_region


def test_twin_a_new_session_per_credentials_reads_the_files_again(aws, files_read):
    aws.client_with(creds(1), "cloudformation", REGION)
    files_read.clear()
    boto3.session.Session(**creds(2)).client("cloudformation", region_name=REGION)
    assert any(path.endswith("endpoints.json") or "cloudformation" in path for path in files_read)
