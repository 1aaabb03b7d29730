"""One way to connect to Temporal, shared by the worker, the starter and the tests."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile

from bridgehead.converter import make_data_converter
from bridgehead.settings import Settings, get_settings

DEFAULT_ADDRESS = "localhost:7233"


def connect_config(profile: str | None = None) -> dict[str, Any]:
    """Connection options from ``temporal.toml`` / ``TEMPORAL_*`` variables (temporalio.envconfig)."""
    config: dict[str, Any] = dict(ClientConfigProfile.load(profile=profile).to_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.setdefault("namespace", "default")
    return config


async def make_client(settings: Settings | None = None, *, profile: str | None = None, **overrides: Any) -> Client:
    """Connect with Bridgehead's data converter (pydantic JSON + sensitive-payload encryption) and,
    when ``BRIDGEHEAD_TRACING=true``, the tracing interceptor (a worker built on this client
    inherits it)."""
    settings = settings or get_settings()
    config = connect_config(profile)
    config.setdefault("interceptors", tracing_interceptors(settings))
    config.update(overrides)
    return await Client.connect(data_converter=make_data_converter(settings.codec_key_bytes(), settings.codec_old_key_bytes()), **config)


def tracing_interceptors(settings: Settings, tracer: Any = None) -> list[Any]:
    """The SDK's OpenTelemetry interceptor when ``BRIDGEHEAD_TRACING=true`` (spans for every
    workflow, activity, signal and update; exporter configured by the standard OTEL_* variables)."""
    if not settings.tracing:
        return []
    try:
        from temporalio.contrib.opentelemetry import TracingInterceptor
    except ImportError as e:  # opentelemetry is an optional extra
        raise SystemExit("BRIDGEHEAD_TRACING=true needs the otel extra: pip install -e '.[otel]'") from e
    return [TracingInterceptor(tracer)]
