"""The EC2 vCPU quota pre-check: need from the vCPU table, usage from running instances, and a
clear refusal naming the quota code; degrades to a warning where Service Quotas is unavailable."""

from __future__ import annotations

from botocore.exceptions import ClientError
from temporalio.testing import ActivityEnvironment

from activities.aws import OrgRecord
from activities.regions import RegionActivities
from bridgehead import models as m
from bridgehead.settings import Settings


class _Pages:
    def __init__(self, pages):  # noqa: ANN001
        self.pages = pages

    def paginate(self, **_):  # noqa: ANN003
        return self.pages


class FakeAws:
    def __init__(self, quota: float | Exception, running: list[str]) -> None:
        self.settings = Settings()
        self.quota, self.running = quota, running

    def customer(self, org, service, region):  # noqa: ANN001
        aws = self

        class Client:
            def get_service_quota(self, **_):  # noqa: ANN003
                if isinstance(aws.quota, Exception):
                    raise aws.quota
                return {"Quota": {"Value": aws.quota}}

            def get_paginator(self, _name):  # noqa: ANN001
                return _Pages(
                    [{"Reservations": [{"Instances": [{"InstanceType": t} for t in aws.running]}]}]
                )

        return Client()


class FakeRegistry:
    def org(self, org_id: str) -> OrgRecord:
        return OrgRecord(
            org_id=org_id,
            aws_account_id="222222222222",
            external_id="bh-x",
            role_arn="arn:aws:iam::222222222222:role/R",
            admin_email="a@x.io",
            display_name="X",
            regions=["us-east-1"],
            state="READY",
        )


def check(quota, running, nodes):  # noqa: ANN001
    acts = RegionActivities(FakeAws(quota, running), FakeRegistry())  # type: ignore[arg-type]
    return ActivityEnvironment().run(
        acts.check_vcpu_quota, m.QuotaCheckInput(org_id="acme", region="us-east-1", nodes=nodes)
    )


def test_refused_when_need_plus_usage_exceeds_quota():
    r = check(16.0, ["c5.xlarge"], {"t3.medium": 1, "c5.xlarge": 3})
    assert r.available and not r.sufficient
    assert (r.needed_vcpus, r.in_use_vcpus) == (2 + 3 * 4, 4)
    assert "needs up to 14 more vCPUs" in r.message and "L-1216C47A" in r.message


def test_allowed_when_it_fits():
    r = check(16.0, ["c5.xlarge"], {"t3.medium": 1, "c5.xlarge": 2})
    assert r.available and r.sufficient and r.needed_vcpus == 10


def test_degrades_to_a_warning_where_service_quotas_is_unavailable():
    err = ClientError(
        {"Error": {"Code": "NoSuchResourceException", "Message": "not here"}}, "GetServiceQuota"
    )
    r = check(err, [], {"t3.medium": 1})
    assert not r.available and r.sufficient and "NoSuchResourceException" in r.message
