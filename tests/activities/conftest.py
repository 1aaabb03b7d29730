"""Shared set-up of the activity tests: moto in this process, the platform account and customer
accounts, the registry and ledger tables, and a check that each module ran what it declares.

Layout: one test module per activity module (``activities/images.py`` -> ``test_images.py``; an
aspect too large for it gets ``test_<module>_<aspect>.py``). Each module declares ``ACTIVITIES``,
the registered activity names it exercises, and runs each of them through
``temporalio.testing.ActivityEnvironment`` against moto, asserting the effect in moto (and the
registry). ``tests/test_activity_layout.py`` checks the declarations against the worker's own
registration; :func:`_declared_activities_ran` below checks them against what each module really
ran (whenever the whole module ran and passed in this process).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import botocore.loaders
import botocore.session
import pytest
import temporalio.activity
from botocore.awsrequest import AWSResponse
from temporalio.testing import ActivityEnvironment

from activities.aws import Aws, OrgRecord
from activities.registry import Registry
from starter.emulator import PLATFORM_ACCOUNT, customer_admin

CUSTOMER = "222222222222"
REGION = "us-east-1"

#: Activity names each test module ran through ActivityEnvironment (module name -> names).
_RAN: dict[str, set[str]] = {}
#: Test items per module as collected (before -k/-m/--deselect), and the ones that passed.
_COLLECTED: dict[str, int] = {}
_PASSED: dict[str, set[str]] = {}


@dataclass
class Platform:
    """The platform account (where the worker runs) with its registry, in moto."""

    aws: Aws
    registry: Registry

    def ec2(self, region: str = REGION) -> Any:
        return self.aws.platform("ec2", region)

    def ready_org(self, org_id: str, account: str = CUSTOMER, **fields: Any) -> OrgRecord:
        """A READY organisation written straight into the registry, its role in ``account``."""
        self.registry.put_org(
            org_id,
            {
                "aws_account_id": account,
                "external_id": f"bh-{org_id}-external-id",
                "role_arn": f"arn:aws:iam::{account}:role/BridgeheadAccess",
                "admin_email": f"admin@{org_id}.example",
                "display_name": org_id.title(),
                "regions": [REGION],
                "state": "READY",
                **fields,
            },
        )
        return self.registry.org(org_id)

    def released_image(self, region: str = REGION, name: str = "bridgehead-node") -> str:
        """A platform image tagged as the current release (with a snapshot, as AMIs have)."""
        ec2 = self.ec2(region)
        image = str(ec2.register_image(Name=name, RootDeviceName="/dev/xvda")["ImageId"])
        s = self.aws.settings
        ec2.create_tags(
            Resources=[image], Tags=[{"Key": s.image_tag_key, "Value": s.image_tag_value}]
        )
        return image

    def launchers(self, image: str, region: str = REGION) -> set[str]:
        """The accounts allowed to launch ``image`` (as EC2 records it)."""
        attr = self.ec2(region).describe_image_attribute(
            ImageId=image, Attribute="launchPermission"
        )
        return {p["UserId"] for p in attr.get("LaunchPermissions", []) if "UserId" in p}


def admin(service: str, account: str = CUSTOMER, region: str = REGION) -> Any:
    """A client acting as ``account``'s administrator (moto maps the assumed role to it)."""
    return customer_admin(None, account, service, region)  # type: ignore[arg-type]


def aws_error(code: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    """An AWS error answer, as botocore parses it."""
    parsed = {
        "Error": {"Code": code, "Message": f"planted {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return AWSResponse("https://planted", status, {}, None), parsed


def refuse(client: Any, operation: str, code: str, status: int = 400) -> None:
    """Make ``client`` answer ``operation`` with the AWS error ``code`` (other operations still
    reach moto): botocore Stubber's own mechanism, a ``before-call`` answer."""
    service = client.meta.service_model.service_id.hyphenize()
    answer = aws_error(code, status)
    client.meta.events.register_first(f"before-call.{service}.{operation}", lambda **_: answer)


#: (service, operation) -> answer(params) for clients created from now on (None: moto answers).
Planter = Callable[[str, str, Callable[[dict[str, Any]], Any]], None]


@pytest.fixture
def new_clients(monkeypatch: pytest.MonkeyPatch) -> Planter:
    """Plant answers on the clients an activity builds itself (from customer keys or an assumed
    session, never cached where a test could reach them): ``new_clients(service, operation,
    answer)``, where ``answer(params)`` returns botocore's (response, parsed) or None."""
    planted: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {}
    real = botocore.session.Session.create_client

    def create_client(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = real(self, service_name, *args, **kwargs)
        hyphenized = client.meta.service_model.service_id.hyphenize()
        for (service, operation), answer in planted.items():
            if service == service_name:
                client.meta.events.register_first(
                    f"before-call.{hyphenized}.{operation}",
                    lambda params, _answer=answer, **_: _answer(params),
                )
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    return lambda service, operation, answer: planted.__setitem__((service, operation), answer)


def customer_client(platform: Platform, org_id: str, service: str, region: str = REGION) -> Any:
    """The very client the activities get for ``org_id`` (cached by :class:`Aws`)."""
    return platform.aws.customer(platform.registry.org(org_id), service, region)


def run(fn: Callable[[Any], Any], arg: Any, **info: Any) -> Any:
    """Run one activity as a worker would (``ActivityEnvironment``); ``info`` overrides fields of
    its ``activity.info()`` (attempt, timeouts, workflow id ...)."""
    env = ActivityEnvironment()
    if info:
        env.info = replace(env.info, **info)
    return env.run(fn, arg)


#: ``activity.info()`` of a poll early in a long window: in progress is retried, not returned.
EARLY_IN_WINDOW = {"schedule_to_close_timeout": timedelta(hours=1)}


def trust_of(account: str, role: str) -> dict[str, Any]:
    doc = admin("iam", account).get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    return json.loads(doc) if isinstance(doc, str) else dict(doc)


# --- fixtures ---------------------------------------------------------------------------------
_LOADED: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _botocore_models_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore parses its JSON models (endpoints.json alone ~0.3 s) once per session object, and
    every ``Aws`` and customer session is a new one: parse each file once for all of them, as one
    session already shares them between its clients (read-only)."""
    real = botocore.loaders.JSONFileLoader.load_file

    def load_file(self: Any, file_path: str) -> Any:
        if file_path not in _LOADED:
            _LOADED[file_path] = real(self, file_path)
        return _LOADED[file_path]

    monkeypatch.setattr(botocore.loaders.JSONFileLoader, "load_file", load_file)


@pytest.fixture(autouse=True)
def _no_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto would load thousands of public AMIs per region; the tests register their own images.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    # moto's STS does not refuse AssumeRole without a required External ID; the verifier says so.
    monkeypatch.setenv("BRIDGEHEAD_STS_ENFORCES_TRUST", "false")


@pytest.fixture
def platform(in_process_aws: None) -> Platform:
    """moto in process (tests/conftest.py::in_process_aws) with the registry and ledger tables."""
    from bridgehead.settings import get_settings

    aws = Aws(get_settings())
    registry = Registry(aws)
    registry.ensure_tables()
    assert aws.platform_account() == PLATFORM_ACCOUNT
    return Platform(aws, registry)


@pytest.fixture(autouse=True)
def _record_activities(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record the name of every activity a test runs through ``ActivityEnvironment.run``."""
    ran = _RAN.setdefault(request.module.__name__, set())
    real = ActivityEnvironment.run

    def recording(self: ActivityEnvironment, fn: Any, *args: Any, **kwargs: Any) -> Any:
        defn = temporalio.activity._Definition.from_callable(fn)
        if defn is not None and defn.name:
            ran.add(defn.name)
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(ActivityEnvironment, "run", recording)


def not_run(declared: tuple[str, ...] | list[str], ran: set[str]) -> list[str]:
    """Declared activities no test of the module ran."""
    return sorted(set(declared) - ran)


@pytest.fixture(scope="module", autouse=True)
def _declared_activities_ran(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a module whose every test ran and passed here: each name it declares in
    ``ACTIVITIES`` was run through ActivityEnvironment by one of its tests. Skipped silently for a
    partial run (``-k``, node ids, xdist's share of a module); tests/test_activity_layout.py then
    still checks the declarations statically."""
    yield
    module = request.module
    key = module.__name__
    whole = not any("::" in a for a in request.config.args)
    if not whole or len(_PASSED.get(key, set())) != _COLLECTED.get(key, -1):
        return
    missing = not_run(getattr(module, "ACTIVITIES", ()), _RAN.get(key, set()))
    if missing:
        pytest.fail(
            f"{key} declares {missing} in ACTIVITIES but none of its tests ran them through "
            "ActivityEnvironment"
        )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Before -k, -m and --deselect take items away: what a whole run of each module holds.
    for item in items:
        if isinstance(item, pytest.Function) and item.module is not None:
            name = item.module.__name__
            _COLLECTED[name] = _COLLECTED.get(name, 0) + 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.passed and isinstance(item, pytest.Function):
        _PASSED.setdefault(item.module.__name__, set()).add(item.nodeid)  # type: ignore[union-attr]
    return report
