"""Capacity failover and head-node access: pure decisions shared by the cluster workflow (no I/O,
deterministic, safe in the sandbox) and its activities.

* :func:`capacity_error` reads a failed stack's events and says whether EC2 lacked capacity
  (``InsufficientInstanceCapacity``, ``Unsupported``, ``InstanceLimitExceeded``): only then is
  another Availability Zone or instance type worth a try.
* :func:`attempt_order` is the order of tries: every zone of the first type, then the next type.
* :func:`bootstrap_failed` says whether the head node's readiness signal failed or timed out
  (the template's ``CreationPolicy``), which is when its console output is worth reading.
* :func:`connect_info` is what ``status`` tells users about reaching the head node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bridgehead.models.clusters import ClusterConfig, ConnectInfo, Placement

#: The EC2 errors that mean "not here, not now" rather than "never": they are retried elsewhere.
CAPACITY_CODES = ("InsufficientInstanceCapacity", "Unsupported", "InstanceLimitExceeded")
_CODE_RE = re.compile(r"\b(" + "|".join(CAPACITY_CODES) + r")\b")
#: The same errors as CloudFormation words them when it quotes EC2's message without the code.
_PHRASES = (
    ("do not have sufficient", "InsufficientInstanceCapacity"),
    ("insufficient capacity", "InsufficientInstanceCapacity"),
    ("is not supported in your requested availability zone", "Unsupported"),
    ("you have requested more instances", "InstanceLimitExceeded"),
)
#: Console output kept in a failure reason: the last lines, each cut to a bounded width.
CONSOLE_LINES = 40
CONSOLE_WIDTH = 200


def capacity_error(reasons: Iterable[str]) -> str | None:
    """The capacity error code named in any of ``reasons`` (failure events of a stack), or None."""
    for reason in reasons:
        found = _CODE_RE.search(reason)
        if found:
            return found.group(1)
        low = reason.lower()
        for phrase, code in _PHRASES:
            if phrase in low:
                return code
    return None


def attempt_order(types: list[str], placements: list[Placement]) -> list[tuple[str, Placement]]:
    """Every Availability Zone with the first type, then every zone with the next type."""
    return [(t, p) for t in types for p in placements]


def bootstrap_failed(resource: str | None, reason: str | None) -> bool:
    """The head node's ``CreationPolicy`` ended the stack: a failure signal, or no signal in time."""
    if not resource or not resource.startswith("HeadNode"):
        return False
    low = (reason or "").lower()
    return "signal" in low or "timed out" in low or "timeout" in low


def console_tail(text: str) -> list[str]:
    """The last :data:`CONSOLE_LINES` non-blank lines, each at most :data:`CONSOLE_WIDTH` characters,
    control characters removed (console output carries terminal escapes)."""
    lines = []
    for raw in text.splitlines():
        clean = "".join(ch for ch in raw if ch == "\t" or ch.isprintable()).rstrip()
        if clean:
            lines.append(clean[:CONSOLE_WIDTH])
    return lines[-CONSOLE_LINES:]


def connect_info(outputs: dict[str, str], region: str, config: ClusterConfig) -> ConnectInfo | None:
    """SSM Session Manager always (no inbound port needed); SSH only with ``ssh_cidr`` and a key."""
    instance = outputs.get("HeadInstanceId")
    if not instance:
        return None
    address = outputs.get("LoginAddress") or outputs.get("HeadPrivateIp")
    ssh = None
    if config.ssh_cidr and config.ssh_key_name and address:
        ssh = f"ssh -i ~/.ssh/{config.ssh_key_name}.pem ec2-user@{address}"
    return ConnectInfo(
        head_instance_id=instance,
        ssm_command=f"aws ssm start-session --target {instance} --region {region}",
        ssh_command=ssh,
    )
