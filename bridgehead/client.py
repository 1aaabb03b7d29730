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
    config: dict[str, Any] = dict(
        ClientConfigProfile.load(profile=profile).to_client_connect_config()
    )
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.setdefault("namespace", "default")
    return config


async def make_client(
    settings: Settings | None = None, *, profile: str | None = None, **overrides: Any
) -> Client:
    """Connect with Bridgehead's data converter (pydantic JSON + sensitive-payload encryption) and,
    when ``BRIDGEHEAD_TRACING=true``, the OpenTelemetry plugin (a worker built on this client
    inherits it; see :mod:`bridgehead.tracing`)."""
    from bridgehead.tracing import tracing_plugins

    settings = settings or get_settings()
    config = connect_config(profile)
    config.setdefault("plugins", tracing_plugins(settings))
    config.update(overrides)
    return await Client.connect(
        data_converter=make_data_converter(
            settings.codec_key_bytes(), settings.codec_old_key_bytes(), settings.codec_accept_v1
        ),
        **config,
    )
