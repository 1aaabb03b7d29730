"""Static checks of the IAM policies Bridgehead publishes, beyond what linters see.

* :func:`condition_key_findings`: every condition key a statement uses is one that each of its
  actions supports at request time, according to AWS's Service Authorization Reference (the copy
  ``policy_sentry`` ships offline), and no action without a resource type is gated on
  ``aws:ResourceTag`` (there is no existing resource whose tag could be read: creation is gated
  on ``aws:RequestTag``).
* :func:`tag_then_manage_findings`: no statement lets the role put the organisation's tag on a
  resource it did not create while another statement grants rights on resources carrying that tag.
* :func:`cloudsplaining_findings`: cloudsplaining's privilege-escalation and resource-exposure
  findings, each attributed to the statements (by Sid) that grant its actions.

Pure (no AWS calls); used by the tests and available to tooling.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from typing import Any

#: Service-specific tag keys of the global ``aws:`` namespace: only these must be listed for the
#: action; every other ``aws:`` key (aws:SourceIp, aws:PrincipalArn, ...) applies to every action.
TAG_KEYS = ("aws:RequestTag/", "aws:ResourceTag/", "aws:TagKeys")
#: Condition keys that exist only while a resource is being created (the tag is part of creation).
CREATION_CONTEXT_KEYS = ("ec2:CreateAction", "elasticfilesystem:CreateAction")
#: Actions that write tags onto an existing resource.
TAGGING_ACTIONS = re.compile(
    r":(TagResource|TagResources|CreateTags|CreateOrUpdateTags|Tag[A-Z]\w*|Put\w*Tagging)$"
)


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _sid(st: dict[str, Any], i: int) -> str:
    return st.get("Sid") or f"#{i + 1}"


def _allow(policy: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (_sid(st, i), st)
        for i, st in enumerate(_as_list(policy.get("Statement")))
        if st.get("Effect") == "Allow"
    ]


def condition_keys(st: dict[str, Any]) -> list[str]:
    """The condition keys of a statement (operators and values dropped)."""
    return [key for block in (st.get("Condition") or {}).values() for key in block]


@lru_cache(maxsize=4096)
def action_reference(action: str) -> tuple[frozenset[str], bool] | None:
    """``(condition keys, has a resource type)`` of an action from the Service Authorization
    Reference, or ``None`` when the action is unknown there."""
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":", 1)
    try:
        rows = (get_action_data(service, name) or {}).get(service, [])
    except Exception:  # noqa: BLE001 - unknown service
        return None
    rows = [r for r in rows if r["action"].lower() == action.lower()]
    if not rows:
        return None
    keys = frozenset(k for r in rows for k in r["condition_keys"])
    has_resource = any(r["resource_arn_format"] != "*" for r in rows)
    return keys, has_resource


def _key_supported(key: str, supported: frozenset[str]) -> bool:
    if key.startswith("aws:") and not key.startswith(TAG_KEYS):
        return True  # global condition key
    for s in supported:
        pattern = re.sub(r"\$\{[^}]+\}", "*", s)
        if fnmatch.fnmatchcase(key.lower(), pattern.lower()):
            return True
    return False


def condition_key_findings(policy: dict[str, Any]) -> list[dict[str, str]]:
    """``[{sid, action, key, problem}]`` for each (statement, action, condition key) that AWS's
    reference does not support, and each action that is unknown to the reference."""
    out: list[dict[str, str]] = []
    for sid, st in _allow(policy):
        keys = condition_keys(st)
        for action in _expanded(_as_list(st.get("Action"))):
            ref = action_reference(action)
            if ref is None:
                out.append(
                    {
                        "sid": sid,
                        "action": action,
                        "key": "",
                        "problem": "action unknown to the Service Authorization Reference",
                    }
                )
                continue
            supported, has_resource = ref
            if not has_resource and _as_list(st.get("Resource")) != ["*"]:
                out.append(
                    {
                        "sid": sid,
                        "action": action,
                        "key": "",
                        "problem": f'{action} has no resource type: its Resource must be "*" (scope it with conditions)',
                    }
                )
            for key in keys:
                if not _key_supported(key, supported):
                    out.append(
                        {
                            "sid": sid,
                            "action": action,
                            "key": key,
                            "problem": f"{action} does not support condition key {key}",
                        }
                    )
                elif key.startswith("aws:ResourceTag/") and not has_resource:
                    out.append(
                        {
                            "sid": sid,
                            "action": action,
                            "key": key,
                            "problem": f"{action} acts on no existing resource, so aws:ResourceTag is never present: "
                            "gate creation on aws:RequestTag",
                        }
                    )
    return out


def _expanded(patterns: list[str]) -> list[str]:
    """Action patterns (``kms:GenerateDataKey*``) as the actions they name; unknown ones kept."""
    out: list[str] = []
    for p in patterns:
        if "*" in p or "?" in p:
            hits = [
                a
                for a in _all_actions(p.split(":", 1)[0])
                if fnmatch.fnmatchcase(a.lower(), p.lower())
            ]
            out += hits or [p]
        else:
            out.append(p)
    return out


def _service(action: str) -> str:
    return action.split(":", 1)[0].lower()


def _resource_tag_keys(st: dict[str, Any]) -> set[str]:
    return {
        k.split("/", 1)[1] for k in condition_keys(st) if re.match(r"^[a-z0-9-]+:ResourceTag/", k)
    }


def _request_tag_keys(st: dict[str, Any]) -> set[str]:
    return {k.split("/", 1)[1] for k in condition_keys(st) if k.startswith("aws:RequestTag/")}


def tag_then_manage_findings(
    policy: dict[str, Any], scope_markers: tuple[str, ...]
) -> list[dict[str, str]]:
    """Tag-then-manage: a statement lets the role tag resources it did not create (not limited to
    creation time by a creation-context key, nor to resource names under ``scope_markers``), and a
    statement of the same service grants other actions on resources carrying that tag.

    Returns ``[{sid, action, manage_sid, tag}]``."""
    out: list[dict[str, str]] = []
    allow = _allow(policy)
    for sid, st in allow:
        tagging = [a for a in _as_list(st.get("Action")) if TAGGING_ACTIONS.search(a)]
        if not tagging:
            continue
        if any(k in condition_keys(st) for k in CREATION_CONTEXT_KEYS):
            continue
        resources = _as_list(st.get("Resource"))
        if resources and all(any(m in r for m in scope_markers) for r in resources):
            continue
        writable = _request_tag_keys(st) or {"*"}
        for action in tagging:
            for msid, mst in allow:
                managed = [
                    a
                    for a in _as_list(mst.get("Action"))
                    if _service(a) == _service(action) and not TAGGING_ACTIONS.search(a)
                ]
                if not managed:
                    continue
                for tag in _resource_tag_keys(mst):
                    if "*" in writable or tag in writable:
                        out.append({"sid": sid, "action": action, "manage_sid": msid, "tag": tag})
    return out


def _granting_sids(policy: dict[str, Any], action: str) -> list[str]:
    hits = []
    for sid, st in _allow(policy):
        if any(
            fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in _as_list(st.get("Action"))
        ):
            hits.append(sid)
    return sorted(hits)


def cloudsplaining_findings(
    policy: dict[str, Any], *, ignore_constraints: bool
) -> list[dict[str, Any]]:
    """cloudsplaining's ``PrivilegeEscalation`` and ``ResourceExposure`` findings on ``policy``.

    ``ignore_constraints=False`` is cloudsplaining's default (statements with a condition or a
    resource ARN are trusted); ``True`` flags them too, i.e. what the actions could do if the
    conditions and resource scoping were not there. Privilege escalations are returned as
    ``{check, type, grants: {action: [sid, ...]}}``, resource exposures per statement as
    ``{check, sid, action}``; infrastructure modification without any constraint (resource ``*``,
    no condition) as ``{check: "InfrastructureModification", sid, action}``."""
    from cloudsplaining.scan.policy_document import PolicyDocument

    flags = {
        "flag_conditional_statements": ignore_constraints,
        "flag_resource_arn_statements": ignore_constraints,
    }
    out: list[dict[str, Any]] = []
    for esc in PolicyDocument(policy, **flags).allows_privilege_escalation:  # type: ignore[arg-type]  # cloudsplaining's own keywords
        grants = {}
        for a in esc["actions"]:
            service, name = a.split(":", 1)
            canonical = next((x for x in _all_actions(service) if x.lower() == a.lower()), a)
            grants[canonical] = _granting_sids(policy, canonical)
        out.append({"check": "PrivilegeEscalation", "type": esc["type"], "grants": grants})
    for sid, st in _allow(policy):
        single = PolicyDocument({"Version": "2012-10-17", "Statement": [st]}, **flags)  # type: ignore[arg-type]
        for a in single.permissions_management_without_constraints:
            out.append({"check": "ResourceExposure", "sid": sid, "action": a})
        if not ignore_constraints:
            for a in single.infrastructure_modification:
                out.append({"check": "InfrastructureModification", "sid": sid, "action": a})
    return out


@lru_cache(maxsize=256)
def _all_actions(service: str) -> tuple[str, ...]:
    from policy_sentry.querying.actions import get_actions_for_service

    try:
        return tuple(get_actions_for_service(service))
    except Exception:  # noqa: BLE001 - unknown service
        return ()
