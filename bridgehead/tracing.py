"""OpenTelemetry tracing (optional ``otel`` extra, ``BRIDGEHEAD_TRACING=true``).

Uses the SDK's current integration, :class:`temporalio.contrib.opentelemetry.OpenTelemetryPlugin`
(spans with real durations, replay-safe), and installs a process-wide tracer provider that exports
over OTLP/HTTP. The exporter is configured by the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, …), so a
collector, Honeycomb, Grafana Tempo or Jaeger is configuration, not code.
"""

from __future__ import annotations

from typing import Any

from bridgehead.settings import Settings

_INSTALLED: Any = None


def tracing_plugins(settings: Settings, exporter: Any = None) -> list[Any]:
    """The client plugins for tracing (empty when off). A worker built on the client inherits
    them. ``exporter``: a span exporter to use instead of OTLP (tests pass an in-memory one)."""
    global _INSTALLED
    if not settings.tracing:
        return []
    try:
        import opentelemetry.trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from temporalio.contrib.opentelemetry import OpenTelemetryPlugin, create_tracer_provider
    except ImportError as e:  # opentelemetry is an optional extra
        raise SystemExit(
            "BRIDGEHEAD_TRACING=true needs the otel extra: pip install -e '.[otel]'"
        ) from e
    if _INSTALLED is None:
        # Resource.create reads OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES; default the name.
        provider = create_tracer_provider(
            resource=Resource.create({"service.name": "bridgehead"}).merge(Resource.create())
        )
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        opentelemetry.trace.set_tracer_provider(provider)
        _INSTALLED = provider
    return [OpenTelemetryPlugin(add_temporal_spans=True)]
