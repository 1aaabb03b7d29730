"""A secret scanner that decodes what it scans, so a plaintext secret cannot hide in an encoding.

``history.to_json()`` holds payloads as base64, so searching it for a secret finds nothing even
when the secret sits in a payload in plain JSON. This scanner instead visits every ``Payload``
message of every event (inputs, results, signals, updates, failures' encoded attributes, headers,
search attributes, memo, wherever the protobuf puts one) and looks at it in every form a reader
could recover it:

* ``plain``: the payload bytes as text, and every string of the payload once parsed as JSON (JSON
  escapes such as ``\\u002f`` undone);
* ``base64``: any base64 token inside the bytes or those strings, decoded (one level, then JSON);
* ``encrypted``: the payload decoded through the codec with the test key, then all of the above.

Plain and base64 findings are defects wherever they are. ``encrypted`` findings are where the
secret is *supposed* to be (the codec-protected update and activity input); the caller decides
which locations are allowed, and their presence proves the scanner reaches the secret at all.

The same text forms (plus URL-decoding, as botocore logs request bodies) are used for log files.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

_B64 = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


@dataclass(frozen=True)
class Finding:
    """Where a needle was found. ``needle`` is the label, never the secret itself."""

    needle: str
    where: str
    layer: str  # "plain" | "base64" | "encrypted" | "log"

    def __str__(self) -> str:
        return f"{self.needle} [{self.layer}] at {self.where}"


# --- walking protobuf messages -----------------------------------------------------------------
def payloads_in(msg: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every ``Payload`` anywhere inside ``msg`` (maps and repeated fields included), with a path."""
    if isinstance(msg, Payload):
        yield path, msg
        return
    for fd, value in msg.ListFields():
        if fd.type != fd.TYPE_MESSAGE:
            continue
        name = f"{path}.{fd.name}" if path else fd.name
        if fd.message_type.GetOptions().map_entry:
            vfd = fd.message_type.fields_by_name["value"]
            if vfd.type == vfd.TYPE_MESSAGE:
                for k, v in value.items():
                    yield from payloads_in(v, f"{name}[{k}]")
        elif fd.is_repeated:
            for i, v in enumerate(value):
                yield from payloads_in(v, f"{name}[{i}]")
        else:
            yield from payloads_in(value, name)


def strings_in(msg: Message, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string field anywhere inside ``msg`` (failure messages, stack traces, identities...)."""
    for fd, value in msg.ListFields():
        name = f"{path}.{fd.name}" if path else fd.name
        if fd.type == fd.TYPE_STRING:
            for i, v in enumerate(value if fd.is_repeated else [value]):
                yield (f"{name}[{i}]" if fd.is_repeated else name), v
        elif fd.type == fd.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                vfd = fd.message_type.fields_by_name["value"]
                for k, v in value.items():
                    yield f"{name}[{k}]#key", str(k)
                    if vfd.type == vfd.TYPE_MESSAGE:
                        yield from strings_in(v, f"{name}[{k}]")
                    elif vfd.type == vfd.TYPE_STRING:
                        yield f"{name}[{k}]", v
            elif fd.is_repeated:
                for i, v in enumerate(value):
                    yield from strings_in(v, f"{name}[{i}]")
            else:
                yield from strings_in(value, name)


# --- text forms --------------------------------------------------------------------------------
def _json_strings(v: Any) -> Iterator[str]:
    if isinstance(v, str):
        yield v
    elif isinstance(v, Mapping):
        for k, x in v.items():
            yield str(k)
            yield from _json_strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from _json_strings(x)
    elif v is not None:
        yield str(v)


def _b64_decodings(data: bytes) -> Iterator[bytes]:
    for tok in _B64.findall(data):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                yield decode(tok + b"=" * (-len(tok) % 4))
            except (binascii.Error, ValueError):
                continue


def text_forms(data: bytes) -> Iterator[tuple[str, str]]:
    """(layer, text) pairs: the bytes, their JSON strings, and base64 inside either, decoded."""
    text = data.decode("utf-8", errors="ignore")
    yield "plain", text
    strings: list[str] = []
    try:
        strings = list(_json_strings(json.loads(text)))
    except ValueError:
        pass
    for s in strings:
        yield "plain", s
    for blob in [data, *(s.encode() for s in strings)]:
        for dec in _b64_decodings(blob):
            dtext = dec.decode("utf-8", errors="ignore")
            yield "base64", dtext
            try:
                for s in _json_strings(json.loads(dtext)):
                    yield "base64", s
            except ValueError:
                pass


def _hits(
    needles: Mapping[str, str],
    forms: Iterable[tuple[str, str]],
    where: str,
    layer: str | None = None,
) -> set[Finding]:
    found: set[Finding] = set()
    for lay, text in forms:
        for label, needle in needles.items():
            if needle and needle in text:
                found.add(Finding(label, where, layer or lay))
    return found


# --- histories and workflow descriptions ------------------------------------------------------------
async def scan_payload(
    p: Payload, needles: Mapping[str, str], where: str, codec: PayloadCodec | None
) -> set[Finding]:
    found = _hits(needles, text_forms(p.data), where)
    for k, v in p.metadata.items():
        found |= _hits(needles, text_forms(v), f"{where}.metadata[{k}]")
    if codec is not None and p.metadata.get("encoding") == b"binary/encrypted":
        (inner,) = await codec.decode([p])
        for f in await scan_payload(inner, needles, where, None):
            found.add(Finding(f.needle, f.where, "encrypted"))
    return found


async def scan_message(
    msg: Message, needles: Mapping[str, str], codec: PayloadCodec | None, prefix: str
) -> set[Finding]:
    """Every payload (decoded) and every string field of ``msg``."""
    found: set[Finding] = set()
    for path, p in payloads_in(msg):
        found |= await scan_payload(p, needles, f"{prefix} {path}", codec)
    for path, s in strings_in(msg):
        found |= _hits(needles, [("plain", s)], f"{prefix} {path}")
    return found


async def scan_history(
    history: Any, needles: Mapping[str, str], codec: PayloadCodec | None, namespace: str = "default"
) -> set[Finding]:
    """A :class:`temporalio.client.WorkflowHistory` (or anything with ``.events`` and
    ``.workflow_id``): each event is scanned whole, payloads decoded. Sensitive payloads are bound
    to their workflow (AEAD associated data), so the codec decodes them in that workflow's context."""
    from temporalio.converter import WithSerializationContext, WorkflowSerializationContext

    if isinstance(codec, WithSerializationContext):
        codec = codec.with_context(
            WorkflowSerializationContext(namespace=namespace, workflow_id=history.workflow_id)
        )
    found: set[Finding] = set()
    for ev in history.events:
        kind = ev.WhichOneof("attributes") or "event"
        found |= await scan_message(
            ev, needles, codec, f"{history.workflow_id}#{ev.event_id} {kind}"
        )
    return found


async def scan_client(
    client: Any, needles: Mapping[str, str], codec: PayloadCodec | None, query: str | None = None
) -> tuple[set[Finding], int]:
    """Every workflow the client lists: its full history, and its description (current search
    attributes, memo, pending activities' failures and heartbeat details). Returns the findings and
    how many workflows were scanned."""
    found: set[Finding] = set()
    n = 0
    async for wf in client.list_workflows(query):
        n += 1
        h = client.get_workflow_handle(wf.id, run_id=wf.run_id)
        found |= await scan_history(await h.fetch_history(), needles, codec, client.namespace)
        desc = await h.describe()
        found |= await scan_message(desc.raw_description, needles, codec, f"{wf.id} describe")
    return found, n


# --- logs ---------------------------------------------------------------------------------------
def scan_logs(paths: Iterable[Path], needles: Mapping[str, str]) -> set[Finding]:
    """Each line as written, URL-decoded, with JSON string escapes undone, and base64 tokens in it decoded."""
    found: set[Finding] = set()
    for path in paths:
        for n, raw in enumerate(path.read_bytes().splitlines(), 1):
            line = raw.decode("utf-8", errors="ignore")
            forms = [("log", line), ("log", urllib.parse.unquote_plus(line))]
            try:
                forms.append(("log", line.encode().decode("unicode_escape")))
            except UnicodeDecodeError:
                pass
            forms += [("log", d.decode("utf-8", errors="ignore")) for d in _b64_decodings(raw)]
            found |= _hits(needles, forms, f"{path.name}:{n}", "log")
    return found


def log_files(*dirs: Path) -> list[Path]:
    """Every ``*.log`` under the given folders (worker, dev server, moto, CLI runs)."""
    return sorted({p for d in dirs if d.exists() for p in d.rglob("*.log") if p.is_file()})


async def readable_and_encrypted(
    history: Any, needles: Mapping[str, str], codec: PayloadCodec | None, namespace: str = "default"
) -> tuple[list[str], list[str]]:
    """One history scanned: the findings a reader could recover (plain or base64: defects), and
    those only the codec's key recovers (where a protected value is meant to be; their presence
    proves the scan reaches it). Each as ``str(Finding)``, sorted."""
    found = await scan_history(history, needles, codec, namespace)
    readable = sorted(str(f) for f in found if f.layer != "encrypted")
    return readable, sorted(str(f) for f in found if f.layer == "encrypted")
