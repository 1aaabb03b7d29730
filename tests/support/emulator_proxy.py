"""A test-only HTTP proxy in front of the moto server: the emulator extensions our tests need.

1. **External ID enforcement.** moto (5.2.5) in IAM-enforcing mode checks a trust policy's
   principal and compares ``sts:ExternalId`` when the caller passes one, but lets an ``AssumeRole``
   *without* an External ID through even when the trust policy requires one (its condition check
   skips keys that are absent). Real STS refuses that call. The proxy refuses it the same way, so
   the verifier's confused-deputy probe proves something here.
2. **Fault injection before the fact.** A given fraction of AWS calls get a throttling error or a
   503 before they reach moto, in each protocol's own error format, so botocore and Temporal see
   what they would see from AWS. Counted per kind, for the fault suite's figures.
3. **Faults after the fact** (``after_rate``): a mutating call is forwarded to moto, takes effect,
   and *then* the caller gets a 500, a throttling error, or a dropped connection (the response is
   lost). This is the case idempotency exists for: a retry must find what the first attempt
   created instead of creating it again. Counted per kind and action (``after_faults``); every
   mutating call that reached moto is counted in ``mutations``. ``fail_next_after`` forces the next
   N calls of an action to be answered this way (deterministic twins).
4. **Latency** (``delays``): chosen actions are held for a while before they reach moto, so an
   activity making that call is in flight long enough for the crash suite to kill the worker
   under it (moto answers in milliseconds; AWS does not).
5. **CopyImage ClientToken.** moto (5.2.5) ignores ``ClientToken`` on CopyImage (and does not
   refuse a duplicate AMI name), where EC2 returns the first call's image for a repeated token.
   The proxy answers a repeated (credentials, region, token) with the first response, as EC2
   does, so an in-call botocore retry after a lost response behaves as on AWS.

6. **Capacity errors** (``no_capacity``: a set of (instance type, subnet id)). moto completes
   every stack at once and never fails one on EC2 capacity. A ``CreateStack`` whose
   ``ComputeInstanceType`` and ``PrivateSubnetId`` parameters are in the set is carried out by
   moto, and then the stack is *shown* as AWS shows such a stack: ``DescribeStacks`` answers
   ``ROLLBACK_COMPLETE`` (no outputs) and ``DescribeStackEvents`` starts with the compute group's
   ``CREATE_FAILED`` event quoting EC2's ``InsufficientInstanceCapacity`` message, until the
   stack is deleted. Each such creation is listed in ``capacity_failures``.

Never put this in front of real AWS: it forwards requests verbatim (signatures included) to one
fixed upstream.
"""

from __future__ import annotations

import html
import http.client
import json
import random
import re
import socket
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from starter.local import customer_admin

_STS_DENIED = (
    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
    "<Code>AccessDenied</Code><Message>{msg}</Message></Error><RequestId>emulator-proxy</RequestId></ErrorResponse>"
)
_CAPACITY_ACTIONS = ("CreateStack", "DeleteStack", "DescribeStacks", "DescribeStackEvents")
#: What CloudFormation reports for an auto scaling group EC2 could not fill.
_ICE = (
    "Group did not stabilize. Failed Scaling Activity: We currently do not have sufficient {itype} "
    "capacity in the Availability Zone you requested. Our system will be working on provisioning "
    "additional capacity. Launching EC2 instance failed. (Error Code: InsufficientInstanceCapacity)"
)
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
#: Action names (or their prefixes) that change something; S3 by HTTP method.
_MUTATING_PREFIXES = (
    "Create",
    "Run",
    "Copy",
    "Modify",
    "Put",
    "Delete",
    "Terminate",
    "Update",
    "Attach",
    "Detach",
    "Register",
    "Deregister",
    "Start",
    "Stop",
    "Send",
    "BatchMeterUsage",
    "MeterUsage",
    "BatchWrite",
    "TransactWrite",
    "Associate",
    "Disassociate",
    "Reset",
    "Import",
    "Add",
    "Remove",
    "Enable",
    "Disable",
    "Set",
    "Tag",
    "Untag",
    "Publish",
    "Subscribe",
    "Unsubscribe",
    "Revoke",
    "Authorize",
    "Verify",
    "Upload",
    "Complete",
    "Cancel",
    "Allocate",
    "Release",
)
AFTER_KINDS = ("500", "throttle", "drop")


def is_mutating(action: str) -> bool:
    """Whether an AWS action (``X-Amz-Target``, query ``Action`` or ``METHOD /path``) changes state."""
    if " /" in action:  # S3 (REST): by method
        return action.split(" ", 1)[0] in ("PUT", "POST", "DELETE")
    name = action.rsplit(".", 1)[-1]  # DynamoDB_20120810.PutItem -> PutItem
    return name.startswith(_MUTATING_PREFIXES)


class EmulatorProxy:
    def __init__(
        self,
        upstream: str,
        admin_creds: dict[str, str],
        fault_rate: float = 0.0,
        seed: int = 7,
        after_rate: float = 0.0,
        after_kinds: tuple[str, ...] = AFTER_KINDS,
    ) -> None:
        u = urllib.parse.urlparse(upstream)
        self.upstream_host, self.upstream_port = u.hostname or "127.0.0.1", u.port or 80
        self.upstream = upstream
        self.admin_creds = admin_creds
        self.fault_rate = fault_rate
        #: Fraction of mutating calls answered with a fault *after* moto carried them out.
        self.after_rate = after_rate
        self.after_kinds = after_kinds
        #: action -> how many of its next calls get a fault after the fact, whatever the rate.
        self.fail_next_after: Counter[str] = Counter()
        #: action -> how many of its next calls get a 503 *before* reaching moto (nothing done).
        self.fail_next_before: Counter[str] = Counter()
        #: action name -> seconds to hold the request before forwarding it.
        self.delays: dict[str, float] = {}
        self.after_faults: Counter[tuple[str, str]] = Counter()
        self.mutations: Counter[str] = Counter()
        self.seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.faults: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.refused_assume: list[str] = []
        self._last_body: dict[int, bytes] = {}
        self._copy_tokens: dict[tuple[str, str], bytes] = {}
        self._last_headers: dict[int, dict[str, str]] = {}
        #: (ComputeInstanceType, PrivateSubnetId) pairs whose stacks fail for lack of capacity.
        self.no_capacity: set[tuple[str, str]] = set()
        #: Stack name -> EC2's message, while a stack made to fail is not deleted.
        self._failing: dict[str, str] = {}
        self.capacity_failures: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> EmulatorProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        target = h.headers.get("X-Amz-Target")
        form = (
            urllib.parse.parse_qs(body.decode(errors="ignore"))
            if not target and body[:7] == b"Action="
            else {}
        )
        action = target or (form.get("Action") or [h.command + " " + h.path.split("?")[0]])[0]
        delay = self.delays.get(action.rsplit(".", 1)[-1])
        if delay:
            time.sleep(delay)
        with self._lock:
            self.requests[action] += 1
            inject = (
                self.fault_rate > 0
                and self._rng.random() < self.fault_rate
                and not h.path.startswith("/moto-api")
            )
            kind = self._rng.choice(["throttle", "503"]) if inject else None
            short = action.rsplit(".", 1)[-1]
            if self.fail_next_before[short] > 0:  # forced: never reaches moto
                self.fail_next_before[short] -= 1
                kind = "503"
        if kind:
            with self._lock:
                self.faults[kind] += 1
            return self._fault(h, kind, target, form)
        if form.get("Action") == ["AssumeRole"] and "ExternalId" not in form:
            refusal = self._external_id_refusal(form["RoleArn"][0])
            if refusal:
                self.refused_assume.append(form["RoleArn"][0])
                return self._reply(h, 403, _STS_DENIED.format(msg=refusal).encode(), "text/xml")
        after = None
        mutating = is_mutating(action) and not h.path.startswith("/moto-api")
        if mutating:
            name = action.rsplit(".", 1)[-1]
            with self._lock:
                forced = self.fail_next_after[name] > 0
                if forced:
                    self.fail_next_after[name] -= 1
                if forced or (self.after_rate > 0 and self._rng.random() < self.after_rate):
                    after = self._rng.choice(self.after_kinds)
                    self.after_faults[(after, name)] += 1
        token_key = None
        if form.get("Action") == ["CopyImage"] and form.get("ClientToken"):
            token_key = (self._credential(h), form["ClientToken"][0])
            with self._lock:
                cached = self._copy_tokens.get(token_key)
            if (
                cached is not None
            ):  # EC2 answers a repeated token with the first result (nothing new)
                return (
                    self._reply(h, 200, cached, "text/xml")
                    if after is None
                    else self._after_fault(h, after, target, form)
                )
        if mutating:
            with self._lock:
                self.mutations[action.rsplit(".", 1)[-1]] += 1
        if form.get("Action", [""])[0] in _CAPACITY_ACTIONS and (self.no_capacity or self._failing):
            return self._capacity(h, body, form)
        status = self._forward(h, body, reply=after is None and token_key is None)
        data = self._last_body.pop(threading.get_ident(), b"")
        headers = self._last_headers.pop(threading.get_ident(), {})
        if token_key is not None and status < 400:
            with self._lock:
                self._copy_tokens.setdefault(token_key, data)
        if after is None:
            if token_key is not None:
                self._reply(h, status, data, None, headers)
            return
        if status >= 400:  # moto refused it: nothing took effect, pass its answer on unchanged
            return self._reply(h, status, data, None, headers)
        return self._after_fault(h, after, target, form)

    def _capacity(self, h: BaseHTTPRequestHandler, body: bytes, form: dict[str, list[str]]) -> None:
        """Extension 6: CloudFormation calls of a stack made to fail on EC2 capacity."""
        action, name = form["Action"][0], (form.get("StackName") or [""])[0].split("/")
        stack = name[1] if len(name) > 2 else name[0]  # a stack id: arn:...:stack/<name>/<uuid>
        status = self._forward(h, body, reply=False)
        data = self._last_body.pop(threading.get_ident(), b"")
        headers = self._last_headers.pop(threading.get_ident(), {})
        if status < 400 and action == "CreateStack":
            params = {
                form[k][0]: (form.get(k.replace("ParameterKey", "ParameterValue")) or [""])[0]
                for k in form
                if k.endswith(".ParameterKey")
            }
            key = (params.get("ComputeInstanceType", ""), params.get("PrivateSubnetId", ""))
            if key in self.no_capacity:
                with self._lock:
                    self._failing[stack] = _ICE.format(itype=key[0])
                    self.capacity_failures.append(key)
        elif status < 400 and action == "DeleteStack":
            with self._lock:
                self._failing.pop(stack, None)
        elif status < 400 and stack in self._failing:
            text = data.decode()
            if action == "DescribeStacks":
                text = re.sub(
                    r"<StackStatus>[A-Z_]+</StackStatus>",
                    "<StackStatus>ROLLBACK_COMPLETE</StackStatus>",
                    text,
                )
                text = re.sub(r"<Outputs>.*?</Outputs>", "", text, flags=re.S)
            elif action == "DescribeStackEvents":
                now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
                event = (
                    "<member><StackName>{s}</StackName><LogicalResourceId>{lid}</LogicalResourceId>"
                    "<ResourceType>{rt}</ResourceType><ResourceStatus>{st}</ResourceStatus>"
                    "<ResourceStatusReason>{why}</ResourceStatusReason><Timestamp>{now}</Timestamp>"
                    "<EventId>{lid}-{st}</EventId><StackId>{s}</StackId></member>"
                )
                added = event.format(
                    s=stack,
                    lid=stack,
                    rt="AWS::CloudFormation::Stack",
                    st="ROLLBACK_COMPLETE",
                    why="",
                    now=now,
                ) + event.format(
                    s=stack,
                    lid="ComputeGroup",
                    rt="AWS::AutoScaling::AutoScalingGroup",
                    st="CREATE_FAILED",
                    why=html.escape(self._failing[stack]),
                    now=now,
                )
                text = text.replace("<StackEvents>", "<StackEvents>" + added, 1)
            data = text.encode()
        return self._reply(
            h,
            status,
            data,
            None,
            {k: v for k, v in headers.items() if k.lower() != "content-length"},
        )

    def _after_fault(
        self, h: BaseHTTPRequestHandler, after: str, target: str | None, form: dict[str, list[str]]
    ) -> None:
        """The call took effect; its answer is lost (dropped connection), or an error instead."""
        if after == "drop":
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        if after == "500":
            return self._reply(
                h,
                500,
                b"<Error><Code>InternalError</Code><Message>injected after the fact</Message></Error>",
                "text/xml",
            )
        return self._fault(h, "throttle", target, form)

    @staticmethod
    def _credential(h: BaseHTTPRequestHandler) -> str:
        """Access key id and region of a SigV4 request (``Credential=AKID/date/region/svc/...``)."""
        auth = h.headers.get("Authorization") or ""
        cred = auth.split("Credential=", 1)[-1].split(",", 1)[0].split("/")
        return f"{cred[0]}/{cred[2] if len(cred) > 2 else ''}"

    def _external_id_refusal(self, role_arn: str) -> str | None:
        """Why real STS would refuse this AssumeRole without an External ID, or None."""
        parts = role_arn.split(":")
        account, name = parts[4], parts[5].split("/")[-1]
        if name == "OrganizationAccountAccessRole":
            return None
        try:
            iam = customer_admin(self.upstream, account, "iam", creds=self.admin_creds)
            doc = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        except Exception:  # noqa: BLE001 - unknown role: let moto answer
            return None
        doc = json.loads(urllib.parse.unquote(doc)) if isinstance(doc, str) else doc
        statements = doc.get("Statement", [])
        for st in statements if isinstance(statements, list) else [statements]:
            if st.get("Effect") != "Allow":
                continue
            keys = {k.lower() for cond in (st.get("Condition") or {}).values() for k in cond}
            if "sts:externalid" not in keys:
                return None  # some statement allows without an External ID
        return f"Not authorized to perform sts:AssumeRole on {role_arn}: the trust policy requires sts:ExternalId"

    def _fault(
        self, h: BaseHTTPRequestHandler, kind: str, target: str | None, form: dict[str, list[str]]
    ) -> None:
        if kind == "503":
            return self._reply(
                h,
                503,
                b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>",
                "text/xml",
            )
        if target:  # JSON protocols (DynamoDB, Service Quotas, Marketplace...)
            body = json.dumps(
                {"__type": "ThrottlingException", "message": "Rate exceeded (injected)"}
            ).encode()
            return self._reply(
                h,
                400,
                body,
                "application/x-amz-json-1.0",
                {"x-amzn-ErrorType": "ThrottlingException"},
            )
        if form.get("Version") == ["2016-11-15"]:  # EC2's own query error format
            body = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>injected</Message></Error></Errors></Response>"
            return self._reply(h, 503, body, "text/xml")
        if form:  # other query protocols (STS, IAM, CloudFormation, SES)
            body = b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded (injected)</Message></Error></ErrorResponse>"
            return self._reply(h, 400, body, "text/xml")
        return self._reply(
            h,
            503,
            b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>",
            "application/xml",
        )  # S3

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes, reply: bool = True) -> int:
        """Send the request to moto; answer the caller with moto's response unless ``reply`` is
        false (then the response is kept for this thread and only its status returned)."""
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_HEADERS}
            conn.request(h.command, h.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            drop = _HOP_HEADERS if h.command == "HEAD" else _HOP_HEADERS | {"content-length"}
            extra = {k: v for k, v in resp.getheaders() if k.lower() not in drop}
            if reply:
                self._reply(h, resp.status, data, None, extra)
            else:
                self._last_body[threading.get_ident()] = data
                self._last_headers[threading.get_ident()] = extra
            return resp.status
        finally:
            conn.close()

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if ctype:
            h.send_header("Content-Type", ctype)
        if not any(k.lower() == "content-length" for k in (headers or {})):
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
