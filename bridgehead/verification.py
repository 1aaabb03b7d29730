"""Pure checks of a customer role: its trust policy, what its policies grant beyond what Bridgehead
needs, and the retry rule for a role IAM has not propagated yet.

No AWS calls: ``activities/verification/`` reads the documents and calls these functions; tests
call them directly with adversarial documents. Every failed check carries its fix.
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, TypeVar

from bridgehead import policies
from bridgehead.models import CheckResult
from bridgehead.policy_scope import widened_grants as widened_grants

Level = Literal["strict", "warn"]
T = TypeVar("T")

#: What a statement of the trust policy may allow: assume the role (and tag the session or set a
#: source identity, which only the platform principal could do anyway).
TRUST_ACTIONS = ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")
#: Assume actions that do not need an AWS principal (web identity, SAML) and so bypass the
#: External ID altogether.
FEDERATED_ACTIONS = ("sts:AssumeRoleWithWebIdentity", "sts:AssumeRoleWithSAML")

# Check names (stable: the status shows them and the docs list them).
TRUST_PRINCIPAL = "trust-policy-principal"
TRUST_NOT_PRINCIPAL = "trust-policy-not-principal"
TRUST_NOT_ACTION = "trust-policy-not-action"
TRUST_FEDERATED = "trust-policy-federated"
TRUST_EXTERNAL_ID = "trust-policy-external-id"
EXCESS_GRANTS = "excess-grants"


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _matches(patterns: Iterable[str], action: str) -> bool:
    a = action.lower()
    return any(fnmatch.fnmatchcase(a, str(p).lower()) for p in patterns)


def statement_allows(st: dict[str, Any], action: str) -> bool:
    """Whether the statement's action element covers ``action`` (``Action`` or ``NotAction``)."""
    if "NotAction" in st:
        return not _matches(_as_list(st["NotAction"]), action)
    return _matches(_as_list(st.get("Action")), action)


def _label(st: dict[str, Any], i: int) -> str:
    return f"statement {st.get('Sid') or '#' + str(i + 1)}"


# --- trust policy ------------------------------------------------------------------------------
def analyse_trust(
    doc: dict[str, Any], platform_principal: str, external_id: str
) -> list[CheckResult]:
    """Check *every* Allow statement of a role's trust policy.

    Only the platform principal, with this organisation's External ID, may assume the role. A
    statement fails a named check when it trusts anyone else (wildcards, other accounts or roles,
    services, the platform account's root when a dedicated role is expected), uses ``NotPrincipal``
    or ``NotAction``, allows web-identity or SAML federation, or can grant ``sts:AssumeRole``
    without requiring exactly this External ID.
    """
    exact = json.dumps(policies.trust_policy(platform_principal, external_id))
    fix = f"Set the trust policy to exactly: {exact}"
    ext_fix = f'Add "Condition": {{"StringEquals": {{"sts:ExternalId": "{external_id}"}}}} to the statement, or remove it.'
    statements = [
        (i, st)
        for i, st in enumerate(_as_list(doc.get("Statement")))
        if st.get("Effect") == "Allow"
    ]
    principal_bad: list[str] = []
    not_principal: list[str] = []
    not_action: list[str] = []
    federated: list[str] = []
    ext_bad: list[str] = []
    grants_assume = False
    for i, st in statements:
        where = _label(st, i)
        can_assume = statement_allows(st, "sts:AssumeRole")
        grants_assume = grants_assume or can_assume
        if "NotPrincipal" in st:
            not_principal.append(f"{where} uses NotPrincipal (it trusts everyone not listed)")
        if "NotAction" in st:
            not_action.append(
                f"{where} uses NotAction {_as_list(st['NotAction'])} (it allows every other sts action, sts:AssumeRole included)"
            )
        fed_actions = [a for a in FEDERATED_ACTIONS if statement_allows(st, a)]
        if fed_actions:
            federated.append(f"{where} allows {', '.join(fed_actions)}")
        others = [
            a
            for a in _as_list(st.get("Action"))
            if not any(fnmatch.fnmatchcase(t.lower(), str(a).lower()) for t in TRUST_ACTIONS)
        ]
        others = [
            a
            for a in others
            if not any(fnmatch.fnmatchcase(f.lower(), str(a).lower()) for f in FEDERATED_ACTIONS)
        ]
        if others:
            principal_bad.append(
                f"{where} allows actions other than sts:AssumeRole ({', '.join(map(str, others))})"
            )
        principal = st.get("Principal")
        if "NotPrincipal" not in st:
            if principal is None or principal == "*":
                principal_bad.append(f"{where} trusts *")
            elif isinstance(principal, dict):
                for kind, values in principal.items():
                    for v in _as_list(values):
                        if kind == "Federated":
                            federated.append(f"{where} trusts the identity provider {v}")
                        elif kind != "AWS" or v != platform_principal:
                            principal_bad.append(f"{where} also trusts {kind}:{v}")
            else:
                principal_bad.append(f"{where} has an unreadable Principal {principal!r}")
        if can_assume:
            cond = st.get("Condition") or {}
            ext = (cond.get("StringEquals") or {}).get("sts:ExternalId")
            if ext is None:
                like = any(
                    "sts:ExternalId" in (v or {}) for k, v in cond.items() if k != "StringEquals"
                )
                ext_bad.append(
                    f"{where} "
                    + (
                        "tests sts:ExternalId with another operator (only StringEquals is exact)"
                        if like
                        else "has no sts:ExternalId condition"
                    )
                )
            elif _as_list(ext) != [external_id]:
                ext_bad.append(f"{where} requires a different External ID ({ext!r})")
    if not grants_assume:
        principal_bad.append("the trust policy allows no sts:AssumeRole at all")

    def result(name: str, problems: list[str], ok: str, why: str, remedy: str) -> CheckResult:
        return CheckResult(
            name=name,
            passed=not problems,
            method="analysis",
            detail=ok if not problems else "; ".join(problems) + f": {why}",
            remedy="" if not problems else remedy,
        )

    return [
        result(
            TRUST_PRINCIPAL,
            principal_bad,
            f"every statement trusts only {platform_principal}",
            "anyone listed could act in your account",
            fix,
        ),
        result(
            TRUST_NOT_PRINCIPAL,
            not_principal,
            "no statement uses NotPrincipal",
            "NotPrincipal with Allow trusts every principal not named, in every account",
            "Remove the NotPrincipal statement. " + fix,
        ),
        result(
            TRUST_NOT_ACTION,
            not_action,
            "no statement uses NotAction",
            "NotAction with Allow grants every action not named",
            'Replace NotAction with "Action": "sts:AssumeRole". ' + fix,
        ),
        result(
            TRUST_FEDERATED,
            federated,
            "no statement allows web-identity or SAML federation",
            "a federated identity assumes the role without the platform principal or the External ID",
            "Remove the federated statement (Bridgehead never uses web identity or SAML). " + fix,
        ),
        result(
            TRUST_EXTERNAL_ID,
            ext_bad,
            "every statement that allows sts:AssumeRole requires this organisation's External ID",
            "without it the role is open to the confused-deputy problem",
            ext_fix,
        ),
    ]


# --- excess grants -----------------------------------------------------------------------------
@lru_cache(maxsize=512)
def _service_actions(service: str) -> tuple[str, ...]:
    """Every action of a service, from policy_sentry's offline copy of AWS's Service
    Authorization Reference (empty when policy_sentry is not installed or the service unknown)."""
    try:
        from policy_sentry.querying.actions import get_actions_for_service
    except ImportError:  # pragma: no cover - policy_sentry is a runtime dependency
        return ()
    try:
        return tuple(get_actions_for_service(service))
    except Exception:  # noqa: BLE001 - unknown service prefix
        return ()


def expand_pattern(pattern: str) -> list[str] | None:
    """The actions an action pattern names, or ``None`` for ``*`` (every action of every service)."""
    if pattern == "*":
        return None
    if "*" not in pattern and "?" not in pattern:
        return [pattern]
    service = pattern.split(":", 1)[0]
    found = [
        a for a in _service_actions(service) if fnmatch.fnmatchcase(a.lower(), pattern.lower())
    ]
    return found or [pattern]


def excess_grants(
    documents: list[tuple[str, dict[str, Any]]], required: list[str]
) -> dict[str, str]:
    """Actions the role's policies allow that Bridgehead does not need: ``{action: where}``.

    ``*`` and ``NotAction`` statements are reported as one entry each (they grant whole services
    or everything not named); service wildcards are expanded to their actions.
    """
    need = {a.lower() for a in required}
    out: dict[str, str] = {}
    for source, doc in documents:
        for i, st in enumerate(_as_list(doc.get("Statement"))):
            if st.get("Effect") != "Allow":
                continue
            where = f"{source} {_label(st, i)}"
            if "NotAction" in st:
                out[f"NotAction {_as_list(st['NotAction'])}"] = where + " (every action not listed)"
                continue
            for pattern in _as_list(st.get("Action")):
                actions = expand_pattern(str(pattern))
                if actions is None:
                    out["*"] = where + " (every action of every service: administrator)"
                    continue
                for a in actions:
                    if a.lower() not in need:
                        out.setdefault(a, where if a == pattern else f"{where} via {pattern}")
    return out


@dataclass(frozen=True)
class ExcessWording:
    """What an excess check is called and says: the Bridgehead role's own by default."""

    name: str = EXCESS_GRANTS
    clean: str = "the role's policies grant nothing beyond the permission policy"
    beyond: str = "granted beyond what Bridgehead needs"
    #: ``None``: the permission policy's remedy (it names the statements to narrow).
    remedy: str | None = None


def excess_check(
    excess: dict[str, str],
    level: Level,
    max_listed: int = 60,
    wording: ExcessWording = ExcessWording(),
) -> CheckResult:
    """``strict``: excess grants fail the check (ACTION_REQUIRED); ``warn``: the check passes
    with ``warning`` set and the same detail (READY, shown in ``status``).

    ``excess`` holds :func:`excess_grants` (actions beyond the policy) and :func:`widened_grants`
    (``"<action> on <resource>"``: a published action granted wider than published)."""
    if not excess:
        return CheckResult(name=wording.name, passed=True, method="analysis", detail=wording.clean)
    items = sorted(
        excess.items(), key=lambda kv: (kv[0] != "*", not kv[0].startswith("NotAction"), kv[0])
    )
    listed = "; ".join(f"{a} (by {w})" for a, w in items[:max_listed])
    more = f"; and {len(items) - max_listed} more" if len(items) > max_listed else ""
    detail = f"{len(items)} action(s) {wording.beyond}: {listed}{more}"
    narrow = (
        "narrow each statement named for '<action> on <resource>' to the Resource and Condition "
        "of the published statement shown; "
        if any(" on " in a for a in excess)
        else ""
    )
    remedy = wording.remedy or (
        "Detach the extra policies (e.g. AdministratorAccess) and keep only the permission policy from this "
        f"organisation's status; {narrow}or set the organisation's verification level to warn to accept them."
    )
    if level == "warn":
        return CheckResult(
            name=wording.name,
            passed=True,
            warning=True,
            method="analysis",
            detail=detail,
            remedy=remedy,
        )
    return CheckResult(
        name=wording.name, passed=False, method="analysis", detail=detail, remedy=remedy
    )


# --- node roles ----------------------------------------------------------------------------------
def node_trust_ok(doc: dict[str, Any]) -> bool:
    """The node role may be assumed by EC2 only (Bridgehead passes it to instances)."""
    for st in _as_list(doc.get("Statement")):
        if st.get("Effect") != "Allow":
            continue
        if "NotPrincipal" in st or "NotAction" in st:
            return False
        p = st.get("Principal")
        if (
            not isinstance(p, dict)
            or set(p) != {"Service"}
            or _as_list(p["Service"]) != ["ec2.amazonaws.com"]
        ):
            return False
        if any(str(a).lower() != "sts:assumerole" for a in _as_list(st.get("Action"))):
            return False
    return True


# --- IAM propagation -----------------------------------------------------------------------------
#: Error codes STS returns while a new or changed role (or its trust) has not propagated.
PROPAGATION_CODES = frozenset({"AccessDenied", "InvalidClientTokenId"})
#: A role recorded this recently may still be propagating.
PROPAGATION_WINDOW = timedelta(minutes=5)
#: How long to keep retrying a propagating role before reporting the failure.
PROPAGATION_BUDGET = timedelta(minutes=2)


def retry_while_propagating(
    attempt: Callable[[], T],
    error_code: Callable[[Exception], str | None],
    changed_at: datetime | None,
    now: Callable[[], datetime],
    sleep: Callable[[float], None] = time.sleep,
    budget: timedelta = PROPAGATION_BUDGET,
    first_delay: float = 2.0,
    max_delay: float = 20.0,
) -> tuple[T, int]:
    """Call ``attempt`` until it succeeds; returns ``(result, attempts)``.

    A failure whose code is in :data:`PROPAGATION_CODES` is retried with exponential backoff for up
    to ``budget`` after the first failure, but only for a role created or changed within
    :data:`PROPAGATION_WINDOW` (``changed_at``); anything else is raised at once.
    """
    delay = first_delay
    deadline: datetime | None = None
    attempts = 0
    while True:
        attempts += 1
        try:
            return attempt(), attempts
        except Exception as e:  # noqa: BLE001 - re-raised below unless it is propagation
            code = error_code(e)
            t = now()
            fresh = changed_at is not None and t - changed_at < PROPAGATION_WINDOW
            if code not in PROPAGATION_CODES or not fresh:
                raise
            deadline = deadline or t + budget
            remaining = (deadline - t).total_seconds()
            if remaining <= 0:
                raise
            sleep(min(delay, remaining))
            delay = min(delay * 2, max_delay)
