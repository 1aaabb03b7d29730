"""Pure comparison of the *scope* of what a role's policies grant (resources and conditions) with
the published permission policy, for every action the published policy scopes.

An action granted on ``*`` where the published policy allows it only on this organisation's
resources, or only with a tag condition, lets the role act on anything in the account
(``ec2:TerminateInstances`` on every instance). ``bridgehead/verification.py`` re-exports
:func:`widened_grants` for the excess-grants check; no AWS calls here.

A granted statement is covered when, for each of its resource patterns, one published statement
of that action has a resource pattern that *contains* it (glob containment: the granted
pattern's ``*`` and ``?`` are wildcards the published pattern must cover, never characters it
happens to match; ``${...}`` policy variables are literals that must match exactly) and the
granted conditions imply every published condition (same operator and key, same or provably
stricter values). Anything not provable is reported.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any, NamedTuple


class Scope(NamedTuple):
    """One published statement's scope for an action."""

    label: str
    resources: tuple[str, ...]
    condition: dict[str, Any]


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _label(st: dict[str, Any], i: int) -> str:
    return f"statement {st.get('Sid') or '#' + str(i + 1)}"


def _allows(st: dict[str, Any], action: str) -> bool:
    a = action.lower()
    return any(fnmatch.fnmatchcase(a, str(p).lower()) for p in _as_list(st.get("Action")))


# --- resource patterns ---------------------------------------------------------------------------
def _tokens(pattern: str) -> list[str]:
    """``*`` and ``?`` wildcards, ``${...}`` policy variables (one opaque token) and characters."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("${", i) and "}" in pattern[i:]:
            end = pattern.index("}", i) + 1
            out.append(pattern[i:end])
            i = end
        else:
            out.append(pattern[i])
            i += 1
    return out


def pattern_covers(published: str, granted: str) -> bool:
    """Whether every string the ``granted`` pattern matches is matched by ``published``.

    The published ``*`` covers anything (wildcards and variables of the granted pattern too); the
    published ``?`` covers one character or a granted ``?``, never a granted ``*`` or variable;
    any other published token (a character, a ``${...}`` variable) only the identical token.
    Sound, not complete: a containment it cannot show is reported, never assumed.
    """
    p, g = _tokens(published), _tokens(granted)
    # reach[j]: the first i published tokens can cover the first j granted tokens.
    reach = [True] + [False] * len(g)
    for tok in p:
        nxt = [False] * (len(g) + 1)
        for j in range(len(g) + 1):
            if tok == "*":
                nxt[j] = reach[j] or (j > 0 and nxt[j - 1])
            elif j > 0 and reach[j - 1]:
                gt = g[j - 1]
                if tok == "?":
                    nxt[j] = gt == "?" or (len(gt) == 1 and gt != "*")
                else:
                    nxt[j] = tok == gt and tok not in ("*", "?")
        reach = nxt
    return reach[len(g)]


# --- conditions ----------------------------------------------------------------------------------
def _values(v: Any) -> set[str]:
    return {str(x).lower() if isinstance(x, bool) else str(x) for x in _as_list(v)}


def _keyed(cond: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """``{(operator, condition key in lower case): values}`` (condition keys ignore case)."""
    out: dict[tuple[str, str], set[str]] = {}
    if not isinstance(cond, dict):
        return out  # unreadable: enforces nothing (IAM refuses such documents anyway)
    for op, block in cond.items():
        if not isinstance(block, dict):
            continue
        for key, val in block.items():
            out.setdefault((str(op), str(key).lower()), set()).update(_values(val))
    return out


def _implies(op: str, granted: set[str], published: set[str]) -> bool:
    """Whether the granted values of the same operator and key are at least as strict."""
    base = op.split(":")[-1]
    if not granted:
        return False
    if "Not" in base:  # StringNotEquals, ArnNotLike, NotIpAddress: excluding more is stricter
        return granted >= published
    if base in ("StringLike", "ArnLike", "ArnEquals"):  # wildcards: each value within one
        return all(any(pattern_covers(p, g) for p in published) for g in granted)
    if base in ("StringEquals", "NumericEquals", "DateEquals", "BinaryEquals", "IpAddress"):
        return granted <= published  # fewer accepted values
    return granted == published  # Bool, Null, comparisons: only the same values are proved


def condition_gaps(published: dict[str, Any], granted: dict[str, Any]) -> list[str]:
    """The published conditions the granted condition block does not (provably) enforce."""
    have = _keyed(granted)
    gaps = []
    for (op, key), vals in sorted(_keyed(published).items()):
        got = have.get((op, key))
        if got is None or not _implies(op, got, vals):
            shown = sorted(vals) if len(vals) > 1 else next(iter(vals))
            original = next(k for k in (published.get(op) or {}) if k.lower() == key)
            gaps.append(f"{op} {original}={json.dumps(shown)}")
    return gaps


# --- the comparison ------------------------------------------------------------------------------
def published_scopes(published: dict[str, Any]) -> dict[str, list[Scope]]:
    """``{action in lower case: [Scope]}`` of the published policy's Allow statements."""
    out: dict[str, list[Scope]] = {}
    for i, st in enumerate(_as_list(published.get("Statement"))):
        if st.get("Effect") != "Allow" or "NotResource" in st:
            continue  # a published NotResource covers nothing here (none is published)
        scope = Scope(
            st.get("Sid") or f"#{i + 1}",
            tuple(str(r) for r in _as_list(st.get("Resource"))),
            st.get("Condition") or {},
        )
        for a in _as_list(st.get("Action")):
            out.setdefault(str(a).lower(), []).append(scope)
    return out


def scoped_actions(scopes: dict[str, list[Scope]]) -> list[str]:
    """The actions whose every published grant is scoped (a resource other than ``*``, or a
    condition): for the others any scope is what was published."""
    return sorted(
        a for a, ss in scopes.items() if not any("*" in s.resources and not s.condition for s in ss)
    )


def _describe(scopes: list[Scope]) -> str:
    """The published scopes by Sid, resources (the first two, and how many more) and condition."""
    parts = []
    for s in scopes:
        shown = ", ".join(s.resources[:2]) + (
            f" and {len(s.resources) - 2} more" if len(s.resources) > 2 else ""
        )
        cond = f" with {json.dumps(s.condition, sort_keys=True)}" if s.condition else ""
        parts.append(f"{s.label} on {shown}{cond}")
    return " or ".join(parts)


def uncovered(resource: str, condition: dict[str, Any], scopes: list[Scope]) -> str | None:
    """``None`` if one published scope covers ``resource`` under ``condition``, else why not."""
    gaps: list[str] | None = None
    for s in scopes:
        if any(pattern_covers(p, resource) for p in s.resources):
            missing = condition_gaps(s.condition, condition)
            if not missing:
                return None
            gaps = gaps or missing
    if gaps:
        return "without " + " and ".join(gaps)
    return "beyond the published resources"


def widened_grants(
    documents: list[tuple[str, dict[str, Any]]], published: dict[str, Any]
) -> dict[str, str]:
    """Published actions granted on resources or under conditions the published policy does not
    allow: ``{"<action> on <resource>": "<where>, <why>; published: <scopes>"}`` (the fix: narrow
    that statement to the published scope, which ``excess_check``'s remedy says).

    Every action whose published grant is scoped is compared, not only ``iam:PassRole``.
    ``NotAction`` statements are reported whole by ``excess_grants`` and skipped here; a
    ``NotResource`` statement is a widening (it covers everything not named).
    """
    scopes = published_scopes(published)
    names = {
        str(a).lower(): str(a)
        for st in _as_list(published.get("Statement"))
        for a in _as_list(st.get("Action"))
    }
    scoped = scoped_actions(scopes)
    out: dict[str, str] = {}
    for source, doc in documents:
        for i, st in enumerate(_as_list(doc.get("Statement"))):
            if st.get("Effect") != "Allow" or "NotAction" in st:
                continue
            where = f"{source} {_label(st, i)}"
            if "NotResource" in st:
                resources = [f"NotResource {json.dumps(_as_list(st['NotResource']))}"]
            else:
                resources = [str(r) for r in _as_list(st.get("Resource"))] or ["*"]
            cond = st.get("Condition") or {}
            for key in scoped:
                if not _allows(st, key):
                    continue
                for r in resources:
                    why = (
                        "NotResource grants every resource not named"
                        if r.startswith("NotResource ")
                        else uncovered(r, cond, scopes[key])
                    )
                    if why is None:
                        continue
                    out.setdefault(
                        f"{names[key]} on {r}",
                        f"{where}, {why}; published: {_describe(scopes[key])}",
                    )
    return out
