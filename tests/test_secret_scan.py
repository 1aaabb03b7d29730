"""Planted-defect twins of the secret scan (tests/support/secret_scan.py), offline: a recorded
history gets a secret planted in each place a defect could put it, and the scanner must report
each one, in the right layer; the untouched history must report nothing."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.converter import WorkflowSerializationContext

from bridgehead.converter import SENSITIVE_META, make_data_converter
from tests.conftest import TEST_KEY
from tests.support.secret_scan import Finding, scan_history, scan_logs

ROOT = Path(__file__).resolve().parent
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYPLANTED01"
NEEDLES = {
    "secret": SECRET,
    "key id": "AKIAPLANTEDKEY000001",
    "token": "FwoGZXIvYXdzEPLANTEDTOKEN/abc+def==",
}
CODEC = make_data_converter(TEST_KEY).payload_codec
#: What the worker does for the planted history's workflow: sensitive payloads are bound to it.
WORKFLOW_CODEC = CODEC.with_context(
    WorkflowSerializationContext(namespace="default", workflow_id="org-plant")
)  # type: ignore[union-attr]


def history() -> WorkflowHistory:
    return WorkflowHistory.from_json(
        "org-plant", (ROOT / "histories" / "OnboardOrganization.json").read_text()
    )


def event(h: WorkflowHistory, kind: str):  # type: ignore[no-untyped-def]
    """The attributes of the first event of that kind (a live reference: planting edits ``h``)."""
    return getattr(next(e for e in h.events if e.WhichOneof("attributes") == kind), kind)


def scan(h: WorkflowHistory) -> set[Finding]:
    return asyncio.run(scan_history(h, NEEDLES, CODEC))


def test_clean_history_reports_nothing():
    assert scan(history()) == set()


def _json_payload(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def plant_failure(h: WorkflowHistory) -> None:
    """Append an activity failure whose message names a key id (a plain string field)."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.api.history.v1 import HistoryEvent

    ev = HistoryEvent(
        event_id=len(h.events) + 1, event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
    )
    ev.activity_task_failed_event_attributes.failure.message = (
        f"InvalidClientTokenId: {NEEDLES['key id']}"
    )
    h.events.append(ev)


@pytest.mark.parametrize(
    ("case", "plant", "needle", "layer", "where"),
    [
        # The original defect: JSON payloads are base64 in to_json(), so a plain search misses this.
        (
            "activity result, plain JSON",
            lambda h: (
                event(h, "activity_task_completed_event_attributes")
                .result.payloads[0]
                .CopyFrom(_json_payload({"k": SECRET}))
            ),
            "secret",
            "plain",
            "activity_task_completed_event_attributes.result.payloads[0]",
        ),
        (
            "JSON with escaped slash",
            lambda h: (
                event(h, "activity_task_completed_event_attributes")
                .result.payloads[0]
                .CopyFrom(
                    Payload(
                        metadata={"encoding": b"json/plain"},
                        data=json.dumps({"k": SECRET}).replace("/", "\\u002f").encode(),
                    )
                )
            ),
            "secret",
            "plain",
            "activity_task_completed_event_attributes.result.payloads[0]",
        ),
        (
            "base64 inside a JSON string",
            lambda h: (
                event(h, "activity_task_scheduled_event_attributes")
                .input.payloads[0]
                .CopyFrom(
                    _json_payload(
                        {
                            "blob": base64.b64encode(
                                json.dumps({"token": NEEDLES["token"]}).encode()
                            ).decode()
                        }
                    )
                )
            ),
            "token",
            "base64",
            "activity_task_scheduled_event_attributes.input.payloads[0]",
        ),
        (
            "signal input",
            lambda h: event(
                h, "workflow_execution_signaled_event_attributes"
            ).input.payloads.append(_json_payload(NEEDLES["key id"])),
            "key id",
            "plain",
            "workflow_execution_signaled_event_attributes.input.payloads[0]",
        ),
        (
            "search attribute",
            lambda h: (
                event(h, "upsert_workflow_search_attributes_event_attributes")
                .search_attributes.indexed_fields["OrgId"]
                .CopyFrom(_json_payload(SECRET))
            ),
            "secret",
            "plain",
            "search_attributes.indexed_fields[OrgId]",
        ),
        (
            "memo",
            lambda h: (
                event(h, "workflow_execution_started_event_attributes")
                .memo.fields["note"]
                .CopyFrom(_json_payload({"s": SECRET}))
            ),
            "secret",
            "plain",
            "memo.fields[note]",
        ),
        (
            "failure message (a string, not a payload)",
            lambda h: plant_failure(h),
            "key id",
            "plain",
            "failure.message",
        ),
        (
            "payload metadata",
            lambda h: (
                event(h, "activity_task_completed_event_attributes")
                .result.payloads[0]
                .metadata.__setitem__("note", NEEDLES["token"].encode())
            ),
            "token",
            "plain",
            "metadata[note]",
        ),
        (
            "encrypted payload: found only through the codec",
            lambda h: (
                event(h, "activity_task_completed_event_attributes")
                .result.payloads[0]
                .CopyFrom(encrypted({"k": SECRET}))
            ),
            "secret",
            "encrypted",
            "activity_task_completed_event_attributes.result.payloads[0]",
        ),
    ],
)
def test_each_planted_secret_is_reported(case, plant, needle, layer, where):
    h = history()
    plant(h)
    found = scan(h)
    assert any(f.needle == needle and f.layer == layer and where in f.where for f in found), (
        case,
        found,
    )
    # Nothing else: the plant is the only thing that differs from the clean history.
    assert {f.needle for f in found} == {needle}, (case, found)


def encrypted(value: object) -> Payload:
    p = _json_payload(value)
    p.metadata[SENSITIVE_META] = b"1"
    (enc,) = asyncio.run(WORKFLOW_CODEC.encode([p]))
    assert enc.metadata["encoding"] == b"binary/encrypted" and SECRET.encode() not in enc.data
    return enc


def test_encrypted_payload_is_invisible_without_the_codec():
    h = history()
    event(h, "activity_task_completed_event_attributes").result.payloads[0].CopyFrom(
        encrypted({"k": SECRET})
    )
    assert asyncio.run(scan_history(h, NEEDLES, None)) == set()


@pytest.mark.parametrize(
    ("case", "line", "needle"),
    [
        ("as written", f'{{"event": "assumed", "secret": "{SECRET}"}}', "secret"),
        (
            "URL-encoded request body",
            "Action=AssumeRole&SessionToken="
            + NEEDLES["token"].replace("/", "%2F").replace("+", "%2B"),
            "token",
        ),
        ("JSON-escaped", json.dumps({"k": SECRET}).replace("/", "\\u002f"), "secret"),
        (
            "base64 in a log line",
            "payload=" + base64.b64encode(json.dumps({"id": NEEDLES["key id"]}).encode()).decode(),
            "key id",
        ),
    ],
)
def test_each_planted_log_line_is_reported(tmp_path, case, line, needle):
    clean = "\n".join(f'{{"event": "activity completed", "n": {i}}}' for i in range(50))
    log = tmp_path / "worker.log"
    log.write_text(clean + "\n")
    assert scan_logs([log], NEEDLES) == set()
    log.write_text(clean + "\n" + line + "\n")
    assert {(f.needle, f.where) for f in scan_logs([log], NEEDLES)} == {
        (needle, "worker.log:51")
    }, case
