"""Optional OpenTelemetry tracing: off by default, and when on, the SDK's interceptor emits spans
for workflow runs and their activities."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from bridgehead import models as m
from bridgehead.client import tracing_interceptors
from bridgehead.settings import Settings
from worker import WORKFLOWS, sandbox_runner


def test_tracing_is_off_by_default():
    assert tracing_interceptors(Settings()) == []


async def test_tracing_emits_workflow_and_activity_spans(ts_env):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    interceptors = tracing_interceptors(Settings(tracing=True), provider.get_tracer("bridgehead-test"))
    assert interceptors

    @activity.defn(name="verify_role")
    def verify_role(req: m.VerifyRoleInput) -> m.VerificationReport:
        return m.VerificationReport(org_id=req.org_id, role_arn=req.role_arn, passed=True, checks=[])

    # As make_client does with BRIDGEHEAD_TRACING=true: the client carries the interceptor and the
    # worker built on it inherits it, so a start from a traced client links to the worker's spans.
    client = Client(**{**ts_env.client.config(), "interceptors": interceptors})
    tq = f"tq-{uuid.uuid4()}"
    with ThreadPoolExecutor(2) as ex:
        async with Worker(client, task_queue=tq, workflows=WORKFLOWS, activities=[verify_role], activity_executor=ex,
                          workflow_runner=sandbox_runner()):  # fmt: skip
            inp = m.VerifyRoleInput(org_id="acme", role_arn="arn:aws:iam::222222222222:role/BridgeheadAccess")
            report = await client.execute_workflow("VerifyRole", inp, id=f"org-acme-verify-{uuid.uuid4().int % 10**9 + 1}", task_queue=tq,
                                                         result_type=m.VerificationReport)  # fmt: skip
    assert report.passed
    names = {s.name for s in exporter.get_finished_spans()}
    assert {"StartWorkflow:VerifyRole", "RunWorkflow:VerifyRole", "StartActivity:verify_role", "RunActivity:verify_role"} <= names, names
