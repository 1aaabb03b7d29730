"""Optional OpenTelemetry tracing: off by default; when on, the SDK's OpenTelemetryPlugin (set up
by :func:`bridgehead.tracing.tracing_plugins`, as ``make_client`` does) emits spans for workflow
starts and runs and their activities, and they reach the installed exporter."""

from __future__ import annotations

import uuid

from temporalio import activity
from temporalio.client import Client

from bridgehead import models as m
from bridgehead.settings import Settings
from bridgehead.tracing import tracing_plugins
from tests.support.timeskip import serve


def test_tracing_is_off_by_default():
    assert tracing_plugins(Settings()) == []


async def test_tracing_emits_workflow_and_activity_spans_to_the_exporter(ts_env):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    plugins = tracing_plugins(Settings(tracing=True), exporter=exporter)
    assert plugins

    @activity.defn(name="verify_role")
    def verify_role(req: m.VerifyRoleInput) -> m.VerificationReport:
        return m.VerificationReport(
            org_id=req.org_id, role_arn=req.role_arn, passed=True, checks=[]
        )

    # As make_client does with BRIDGEHEAD_TRACING=true: the client carries the plugin and the
    # worker built on it inherits it, so a start from a traced client links to the worker's spans.
    client = Client(**{**ts_env.client.config(), "plugins": plugins})
    async with serve(ts_env, [verify_role], client=client, threads=2) as w:
        inp = m.VerifyRoleInput(
            org_id="acme", role_arn="arn:aws:iam::222222222222:role/BridgeheadAccess"
        )
        report = await w.execute(
            "VerifyRole",
            inp,
            id=f"org-acme-verify-{uuid.uuid4().int % 10**9 + 1}",
            result_type=m.VerificationReport,
        )
    assert report.passed
    spans = exporter.get_finished_spans()
    names = {s.name for s in spans}
    assert {
        "StartWorkflow:VerifyRole",
        "RunWorkflow:VerifyRole",
        "StartActivity:verify_role",
        "RunActivity:verify_role",
    } <= names, names
    # One trace from the client's start to the activity run.
    assert (
        len({s.context.trace_id for s in spans if s.name.endswith(("VerifyRole", "verify_role"))})
        == 1
    )


def test_twin_without_the_plugin_no_span_reaches_the_exporter():
    """Planted defect: tracing "on" but no plugin on the client; the exporter stays empty, which
    the test above would catch (its span names would be missing)."""
    assert tracing_plugins(Settings(tracing=False)) == []
