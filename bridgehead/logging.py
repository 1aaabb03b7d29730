"""structlog configuration: one stream for Bridgehead, Temporal and boto logs.

JSON lines when stderr is not a terminal, readable console output when it is. Every record from
inside a workflow or an activity carries ``workflow_id``, ``run_id``, ``workflow_type`` (and
``activity_type``), plus the ``org_id`` / ``cluster`` / ``region`` it concerns:

* workflows log through ``workflow.logger`` (replay-safe: silent during replay), passing
  ``extra={"org_id": ..., "cluster": ...}``; the SDK adds ``temporal_workflow``, flattened here;
* activities log through :func:`get_logger`; :func:`merge_temporal_context` adds the activity's
  workflow and activity identity, and :func:`bind_subject` binds org/cluster/region.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SUBJECT_KEYS = ("org_id", "cluster", "region")
_CONFIGURED = False


def merge_temporal_context(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Add workflow/activity identity to records emitted inside an activity or from the SDK's loggers."""
    from temporalio import activity

    event_dict.pop("temporal_log", None)  # the SDK core's raw record (its text is the message)
    for key in ("temporal_workflow", "temporal_activity"):
        info = event_dict.pop(key, None)
        if isinstance(info, dict):
            for k, v in info.items():
                event_dict.setdefault(k, v)
    if "workflow_run_id" in event_dict:  # the SDK's own name for it
        event_dict.setdefault("run_id", event_dict.pop("workflow_run_id"))
    if "activity_type" not in event_dict and activity.in_activity():
        info = activity.info()
        event_dict.setdefault("workflow_id", info.workflow_id)
        event_dict.setdefault("run_id", info.workflow_run_id)
        event_dict.setdefault("workflow_type", info.workflow_type)
        event_dict.setdefault("activity_type", info.activity_type)
        event_dict.setdefault("activity_id", info.activity_id)
        event_dict.setdefault("attempt", info.attempt)
    return event_dict


def bind_subject(**subject: str | None) -> None:
    """Bind org/cluster/region to every log line of the current activity (structlog contextvars)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**{k: v for k, v in subject.items() if v is not None})


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    global _CONFIGURED
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        merge_temporal_context,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_bridgehead", False):
            root.removeHandler(h)
    handler._bridgehead = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # The SDK would append the workflow info dict to every message; we emit it as fields instead.
    from temporalio import workflow

    workflow.logger.workflow_info_on_message = False
    _CONFIGURED = True


def get_logger(name: str = "bridgehead") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
