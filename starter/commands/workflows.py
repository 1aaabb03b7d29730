"""Any workflow by type: ``start`` (the same JSON as the Web UI and ``temporal``), ``status``,
``signal`` and ``schema``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bridgehead import models as m
from starter.args import leaf
from starter.client import WORKFLOWS, client, query, start
from starter.inputs import parse_input
from starter.output import emit, fmt_cluster, fmt_org


async def cmd_start(args: argparse.Namespace) -> int:
    model = WORKFLOWS[args.type][0]
    inp = parse_input(model, args.input)
    h = await start(args.type, inp, args.workflow_id)
    started = {"workflow_id": h.id, "run_id": h.result_run_id}
    if not args.wait:
        emit(args, started, f"started {args.type} as {h.id}")
        return 0
    if not args.json:
        print(f"started {args.type} as {h.id}", flush=True)
    result = await h.result()
    # One document in --json mode: where it started, and what it returned.
    emit(args, {**started, "result": result} if args.json else result)
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    s = await query(args.workflow_id)
    human = None
    if isinstance(s, m.OrgStatus):
        human = fmt_org(s)
    elif isinstance(s, m.ClusterStatus):
        human = fmt_cluster(s)
    emit(args, s, human)
    return 0


async def cmd_signal(args: argparse.Namespace) -> int:
    c = await client()
    await c.get_workflow_handle(args.workflow_id).signal(args.name)
    sent = {"signalled": args.name, "workflow_id": args.workflow_id}
    emit(args, sent, f"sent {args.name} to {args.workflow_id}")
    return 0


async def cmd_schema(args: argparse.Namespace) -> int:
    args.output.document(json.dumps(WORKFLOWS[args.type][0].model_json_schema(), indent=2))
    return 0


def register(sub: Any) -> None:
    types = sorted(WORKFLOWS)
    s = leaf(
        sub,
        "start",
        "start any workflow with JSON input (the same JSON as the UI and temporal CLI)",
        cmd_start,
    )
    s.add_argument("type", choices=types, help="workflow type")
    s.add_argument("input", help="JSON, or @file.json")
    s.add_argument("--workflow-id", help="override the id computed from the input")
    s.add_argument("--wait", action="store_true", help="wait for the workflow's result")

    st = leaf(sub, "status", "query a workflow's status", cmd_status)
    st.add_argument("workflow_id", help="e.g. org-acme, cluster-acme-c1")

    sg = leaf(sub, "signal", "send a signal (cancel, delete, reverify)", cmd_signal)
    sg.add_argument("workflow_id", help="the workflow to signal")
    sg.add_argument("name", choices=["cancel", "delete", "reverify"], help="the signal")

    sc = leaf(sub, "schema", "JSON schema of a workflow's input", cmd_schema)
    sc.add_argument("type", choices=types, help="workflow type")
