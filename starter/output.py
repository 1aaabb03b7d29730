"""What the CLI prints: errors with their exit codes, results (human or ``--json``) and the human
formatting of statuses.

In ``--json`` mode a command prints exactly one JSON document on stdout: the last result it emits
(its outcome), when it ends; progress is shown in human mode only. A command that fails prints
``{"error": ..., "exit_code": ...}`` instead (the message also goes to stderr, as in human mode).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from pydantic import BaseModel

from bridgehead import models as m

#: Exit codes: the contract scripts rely on (README, ``starter/cli.py``).
OK, FAILED, BAD_INPUT, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 130


class CliError(Exception):
    """A failure the CLI reports in one line, with its exit code (1 unless said otherwise)."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def dumps(value: Any) -> str:
    """One JSON document, indented (a pydantic model as its own JSON)."""
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    return json.dumps(value, indent=2, default=str)


class Output:
    """Where one command's results go. Human mode prints each result as it comes; JSON mode keeps
    the latest and prints it once, from :meth:`finish` (or an error document from :meth:`fail`)."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        self._pending: list[Any] = []  # at most one: the latest result in JSON mode

    def emit(self, value: Any, human: str | None = None) -> None:
        if self.json:
            self._pending[:] = [value]
        elif human is not None:
            print(human)
        else:
            print(value.model_dump_json(indent=2) if isinstance(value, BaseModel) else value)

    def document(self, text: str) -> None:
        """A result that is already one JSON document (a template, a schema): printed as it is."""
        self._pending.clear()
        print(text)

    def finish(self) -> None:
        if self._pending:
            print(dumps(self._pending.pop()))

    def fail(self, message: str, code: int) -> None:
        if self.json:
            self._pending.clear()
            print(dumps({"error": message, "exit_code": code}))


def emit(args: argparse.Namespace, value: Any, human: str | None = None) -> None:
    """Show a result of the running command (``args.output``, set by ``starter.cli.main``)."""
    args.output.emit(value, human)


def fmt_org(s: m.OrgStatus) -> str:
    lines = [
        f"organisation {s.org_id}: {s.state.value}",
        f"  external id: {s.external_id}",
        f"  role: {s.role_arn or '-'}",
    ]
    for region, p in s.regions.items():
        lines.append(f"  {region}: images {p.images}, foundation {p.foundation} {p.detail}")
    for c in s.failed_checks:
        lines.append(f"  FAILED {c.name}: {c.detail}\n    fix: {c.remedy}")
    if s.last_error:
        lines.append(f"  last error: {s.last_error}")
    if s.steps:
        lines.append("  progress:")
        lines += [f"    {step}" for step in s.steps[-12:]]
    return "\n".join(lines)


def fmt_cluster(s: m.ClusterStatus) -> str:
    lines = [
        f"cluster {s.name} ({s.org_id}, {s.region}): {s.state.value}",
        f"  stack: {s.stack_name}",
        f"  compute nodes: {s.compute_nodes}",
    ]
    if s.login_address:
        lines.append(f"  login: {s.login_address}")
    if s.failure_reason:
        lines.append(f"  failure: {s.failure_resource or ''} {s.failure_reason}")
    for e in s.latest_events[:3]:
        lines.append(f"  {e.timestamp:%H:%M:%S} {e.logical_id} {e.status} {e.reason}")
    return "\n".join(lines)


def show_cluster_progress(s: m.ClusterStatus) -> None:
    event = s.latest_events[0] if s.latest_events else None
    detail = ""
    if event:
        reason = " " + event.reason if event.reason else ""
        detail = f"  (latest: {event.logical_id} {event.status}{reason})"
    print(f"  {time.strftime('%H:%M:%S')} {s.state.value}{detail}", flush=True)


def show_state(s: Any) -> None:
    """One progress line per change of state (long waits in human mode)."""
    print(f"  {time.strftime('%H:%M:%S')} {s.state.value}", flush=True)
