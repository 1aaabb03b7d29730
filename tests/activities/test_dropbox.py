"""activities/dropbox.py against a versioned inbox bucket in moto (platform account): pending
requests are listed by version, a request is read by the version listed (results older than it
cleared first), checked against the registry's drop-box users, removed by that version only (a
newer upload stays), and answered with a result file; buckets come from settings, never input;
a missing inbox fails at once, saying how to create it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.dropbox import DropboxActivities
from bridgehead import models as m
from tests.activities.conftest import REGION, Platform, refuse, run

ACTIVITIES = (
    "scan_inbox",
    "load_dropbox_request",
    "cluster_owner",
    "delete_dropbox_request",
    "write_dropbox_result",
)

ORG = "acme"
INBOX = "bridgehead-inbox"
CREATE = "home/alice/c1.cf-create"
CONFIG = {"head_instance_type": "t3.medium", "compute_instance_type": "c5.xlarge"}


@pytest.fixture
def acts(platform: Platform) -> DropboxActivities:
    platform.ready_org(ORG, regions=[REGION, "us-west-2"])
    platform.registry.put_dropbox_user("alice", ORG, "alice@acme.example")
    s3 = platform.aws.platform("s3")
    s3.create_bucket(Bucket=INBOX)
    s3.put_bucket_versioning(Bucket=INBOX, VersioningConfiguration={"Status": "Enabled"})
    return DropboxActivities(platform.aws, platform.registry)


def s3(platform: Platform) -> Any:
    return platform.aws.platform("s3")


def upload(platform: Platform, key: str, body: object) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    s3(platform).put_object(Bucket=INBOX, Key=key, Body=text.encode())


def keys(platform: Platform) -> list[str]:
    return sorted(o["Key"] for o in s3(platform).list_objects_v2(Bucket=INBOX).get("Contents", []))


def scanned(acts: DropboxActivities) -> dict[str, str]:
    scan = run(acts.scan_inbox, m.DropboxWatchInput())
    assert scan.bucket == INBOX
    return {f.key: f.etag for f in scan.files}


def test_pending_requests_are_listed_by_their_current_version(
    acts: DropboxActivities, platform: Platform
):
    upload(platform, CREATE, CONFIG)
    upload(platform, "home/bob/db.cf-delete", "")
    upload(platform, "home/alice/c0.cf-created", "done")  # a result, not a request
    upload(platform, "elsewhere/x.cf-create", CONFIG)  # outside home/
    first = scanned(acts)
    assert sorted(first) == [CREATE, "home/bob/db.cf-delete"]
    upload(platform, CREATE, {**CONFIG, "compute_initial_nodes": 2})  # dropped again
    second = scanned(acts)
    assert second[CREATE] != first[CREATE] and len(second) == 2
    versions = s3(platform).list_object_versions(Bucket=INBOX, Prefix=CREATE)["Versions"]
    latest = next(v for v in versions if v["IsLatest"])
    assert second[CREATE].endswith(f"@{latest['VersionId']}")


def test_a_request_is_read_by_the_version_listed_and_checked(
    acts: DropboxActivities, platform: Platform
):
    upload(platform, "home/alice/c1.cf-created", "answer to an older request")
    upload(platform, CREATE, {**CONFIG, "region": "us-west-2"})
    version = scanned(acts)[CREATE]
    upload(platform, CREATE, {**CONFIG, "compute_instance_type": "nope"})  # newer, not listed
    req = m.DropboxRequestInput(bucket=INBOX, key=CREATE, etag=version)
    parsed = run(acts.load_dropbox_request, req)
    assert (parsed.kind, parsed.user, parsed.cluster, parsed.error) == (
        "create",
        "alice",
        "c1",
        None,
    )
    assert (parsed.org_id, parsed.owner, parsed.region) == (ORG, "alice@acme.example", "us-west-2")
    assert parsed.config is not None and parsed.config.compute_types == ["c5.xlarge"]
    assert keys(platform) == [CREATE], "the older result is cleared"


@pytest.mark.parametrize(
    "key,body,error",
    [
        ("home/mallory/c1.cf-create", CONFIG, "user mallory is not registered for the drop-box"),
        ("home/alice/1bad.cf-create", CONFIG, "cluster name '1bad' must match"),
        (CREATE, "{not json", "not valid JSON"),
        (CREATE, {**CONFIG, "head_volume_gb": "big"}, "invalid cluster config: head_volume_gb"),
        (CREATE, {**CONFIG, "region": "eu-north-1"}, "region eu-north-1 is not one of acme's"),
        ("home/alice/sub/c1.cf-create", CONFIG, "request files go directly under home/<user>/"),
    ],
)
def test_a_bad_request_is_answered_with_what_is_wrong(
    acts: DropboxActivities, platform: Platform, key: str, body: object, error: str
):
    upload(platform, key, body)
    versions = s3(platform).list_object_versions(Bucket=INBOX, Prefix=key)["Versions"]
    from activities.dropbox import version_string

    v = versions[0]
    etag = version_string(v["ETag"], v["LastModified"], v["VersionId"])
    parsed = run(acts.load_dropbox_request, m.DropboxRequestInput(bucket=INBOX, key=key, etag=etag))
    assert parsed.error is not None and error in parsed.error, parsed.error
    assert parsed.config is None


def test_removing_a_request_takes_only_the_version_handled(
    acts: DropboxActivities, platform: Platform
):
    upload(platform, CREATE, CONFIG)
    handled = scanned(acts)[CREATE]
    upload(platform, CREATE, {**CONFIG, "compute_initial_nodes": 3})  # while it was handled
    req = m.DropboxRequestInput(bucket=INBOX, key=CREATE, etag=handled)
    run(acts.delete_dropbox_request, req)
    run(acts.delete_dropbox_request, req)  # a retry
    newer = scanned(acts)
    assert list(newer) == [CREATE] and newer[CREATE] != handled, "the new upload waits its turn"
    run(
        acts.delete_dropbox_request,
        m.DropboxRequestInput(bucket=INBOX, key=CREATE, etag=newer[CREATE]),
    )
    assert scanned(acts) == {} and keys(platform) == []


def _older_upload_after_the_newer_is_handled(acts: DropboxActivities, platform: Platform) -> dict:
    """Two uploads of the same request before either is handled (a worker restart with both
    events queued); the newer one is handled and removed. What the next scan finds."""
    upload(platform, CREATE, CONFIG)
    upload(platform, CREATE, {**CONFIG, "compute_initial_nodes": 3})
    newest = scanned(acts)[CREATE]
    run(acts.delete_dropbox_request, m.DropboxRequestInput(bucket=INBOX, key=CREATE, etag=newest))
    return scanned(acts)


def test_handling_a_request_also_removes_the_older_uploads_it_superseded(
    acts: DropboxActivities, platform: Platform
):
    assert _older_upload_after_the_newer_is_handled(acts, platform) == {}
    assert keys(platform) == []


def test_twin_removing_only_the_handled_version_brings_the_older_upload_back(
    acts: DropboxActivities, platform: Platform, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("activities.dropbox.superseded_versions", lambda *a: [])
    assert list(_older_upload_after_the_newer_is_handled(acts, platform)) == [CREATE]


def created_result(version: str) -> m.DropboxResultInput:
    """The answer to alice's request for ``c1`` (that version of it): RUNNING."""
    return m.DropboxResultInput(
        target=m.DropboxTarget(bucket=INBOX, user="alice"),
        cluster="c1",
        suffix="cf-created",
        body="cluster c1 is RUNNING",
        request_key=CREATE,
        request_version=version,
    )


def test_a_result_is_written_beside_the_request_which_goes(
    acts: DropboxActivities, platform: Platform
):
    upload(platform, CREATE, CONFIG)
    version = scanned(acts)[CREATE]
    result = created_result(version)
    run(acts.write_dropbox_result, result)
    run(acts.write_dropbox_result, result)  # a retry
    assert keys(platform) == ["home/alice/c1.cf-created"]
    obj = s3(platform).get_object(Bucket=INBOX, Key="home/alice/c1.cf-created")
    assert obj["Body"].read() == b"cluster c1 is RUNNING\n"
    assert obj["Metadata"] == {"request-version": version}


def test_the_owner_of_an_existing_cluster_is_read(acts: DropboxActivities, platform: Platform):
    parsed = m.DropboxParsed(kind="delete", user="alice", cluster="c1", org_id=ORG)
    assert run(acts.cluster_owner, parsed) is None
    platform.registry.put_cluster(
        ORG, "c1", {"name": "c1", "region": REGION, "state": "RUNNING", "owner": "bob@acme.example"}
    )
    assert run(acts.cluster_owner, parsed) == "bob@acme.example:RUNNING"


def test_a_bucket_named_by_input_is_refused_before_s3_is_touched(
    acts: DropboxActivities, platform: Platform
):
    s3(platform).create_bucket(Bucket="someone-elses")
    upload(platform, CREATE, CONFIG)
    refusals = [
        (acts.scan_inbox, m.DropboxWatchInput(bucket="someone-elses")),
        (
            acts.delete_dropbox_request,
            m.DropboxRequestInput(bucket="someone-elses", key=CREATE, etag="x"),
        ),
        (
            acts.load_dropbox_request,
            m.DropboxRequestInput(bucket="someone-elses", key=CREATE, etag="x"),
        ),
    ]
    for fn, req in refusals:
        with pytest.raises(ApplicationError) as e:
            run(fn, req)
        assert e.value.type == "UntrustedResourceName" and e.value.non_retryable
        assert "'someone-elses' is not the drop-box inbox" in e.value.message
    assert keys(platform) == [CREATE]


def test_a_missing_inbox_fails_at_once_saying_how_to_create_it(platform: Platform):
    acts = DropboxActivities(platform.aws, platform.registry)
    with pytest.raises(ApplicationError) as e:
        run(acts.scan_inbox, m.DropboxWatchInput())
    assert e.value.type == "AwsValidationError" and e.value.non_retryable
    assert (
        "NoSuchBucket" in e.value.message and "python -m starter dropbox setup" in e.value.message
    )


@pytest.mark.parametrize(
    "code,kind,retried",
    [("AccessDenied", "AwsPermissionError", False), ("SlowDown", "AwsThrottled", True)],
)
def test_refusals_of_the_listing_fail_at_once_and_throttling_is_retried(
    acts: DropboxActivities, platform: Platform, code: str, kind: str, retried: bool
):
    refuse(s3(platform), "ListObjectVersions", code, 503 if retried else 403)
    with pytest.raises(ApplicationError) as e:
        run(acts.scan_inbox, m.DropboxWatchInput())
    assert (e.value.type, e.value.non_retryable) == (kind, not retried)
    assert e.value.message.startswith(f"s3:ListBucket {INBOX}")


def owners_sent(platform: Platform, acts: DropboxActivities) -> dict[str, set[str | None]]:
    """Every request a request's handling makes to the inbox (scan, read, answer, remove): the
    ``x-amz-expected-bucket-owner`` header each operation carried."""
    seen: dict[str, set[str | None]] = {}

    def record(request: Any, operation_name: str, **_: Any) -> None:
        if INBOX in request.url:
            owner = request.headers.get("x-amz-expected-bucket-owner")
            seen.setdefault(operation_name, set()).add(
                owner.decode() if isinstance(owner, bytes) else owner
            )

    client = acts._s3()
    client.meta.events.register("before-sign.s3.*", record, unique_id="test-owner-recorder")
    try:
        upload(platform, CREATE, CONFIG)
        version = scanned(acts)[CREATE]
        run(
            acts.load_dropbox_request, m.DropboxRequestInput(bucket=INBOX, key=CREATE, etag=version)
        )
        run(acts.write_dropbox_result, created_result(version))
    finally:
        client.meta.events.unregister("before-sign.s3.*", unique_id="test-owner-recorder")
    return seen


def test_every_call_on_the_inbox_names_the_platform_account_as_its_owner(
    acts: DropboxActivities, platform: Platform
):
    """S3 refuses a call whose ExpectedBucketOwner is not the bucket's owner (moto does not check
    it: what is proved here is that every call says it)."""
    seen = owners_sent(platform, acts)
    account = platform.aws.platform_account()
    assert {"ListObjectVersions", "GetObject", "PutObject", "DeleteObject"} <= set(seen), seen
    assert all(owners == {account} for owners in seen.values()), seen


def test_twin_a_client_without_the_owner_check_names_no_owner(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
):
    from activities.aws import Aws

    monkeypatch.setattr(Aws, "_expect_inbox_owner", lambda self, s3: None)
    fresh = Aws(platform.aws.settings)
    acts = DropboxActivities(fresh, platform.registry)
    platform.ready_org(ORG, regions=[REGION, "us-west-2"])
    platform.registry.put_dropbox_user("alice", ORG, "alice@acme.example")
    fresh.platform("s3").create_bucket(Bucket=INBOX)
    seen = owners_sent(platform, acts)
    assert seen and all(owners == {None} for owners in seen.values()), seen
