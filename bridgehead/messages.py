"""Validation errors in words a user can act on (pure).

Pydantic says ``String should match pattern '^\\d{12}$'`` and names internal types
(``nullable[SubmitRoleInput]``); users of the Web UI, the ``temporal`` CLI and the starter should
read ``aws_account_id: 12 digits, e.g. 222222222222``. :func:`describe` turns a
``ValidationError`` into one line per field; the data converter's failure converter uses it for
every failed start and refused update, and the starter for its own flags. Values are never echoed
(they may be secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: What a field must look like, by field name (the last element of the error's location).
FIELD_HINTS: dict[str, str] = {
    "aws_account_id": "12 digits, e.g. 222222222222",
    "org_id": "3-32 lower-case letters, digits and single hyphens, starting with a letter and "
    "ending with a letter or digit, e.g. acme-prod",
    "name": "a letter, then up to 59 letters, digits or hyphens, e.g. c1",
    "cluster": "a letter, then up to 59 letters, digits or hyphens, e.g. c1",
    "admin_email": "an e-mail address, e.g. admin@acme.example",
    "role_arn": "an IAM role ARN, e.g. arn:aws:iam::222222222222:role/BridgeheadAccess",
    "head_instance_type": "an EC2 instance type, e.g. t3.medium",
    "compute_instance_type": "an EC2 instance type, e.g. c5.xlarge",
    "compute_instance_types": 'an ordered list of 1-4 different EC2 instance types, e.g. ["c5.xlarge", "c6i.xlarge"]',
    "ssh_cidr": "an IPv4 CIDR of a /8 or narrower, e.g. 203.0.113.0/24 (never 0.0.0.0/0)",
    "ssh_key_name": "the name of an EC2 key pair in the region (letters, digits, spaces and ._+=@-)",
    "owner": "a user name of letters, digits and +=,.@_- (at most 64)",
    "user": "a user name of letters, digits and +=,.@_- (at most 64)",
    "access_key_id": "a temporary access key id (ASIA…, from aws sts get-session-token)",
    "display_name": "1-120 characters",
}

_BY_TYPE: dict[str, str] = {
    "missing": "required",
    "extra_forbidden": "not a field of this input (remove it; `python -m starter schema <Type>` lists the fields)",
    "int_type": "a whole number (not text, not a decimal)",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number (not a decimal)",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": 'a JSON list, e.g. ["us-east-1"]',
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "decimal_parsing": "a number",
    "datetime_parsing": "a date and time, e.g. 2026-11-01T00:00:00Z",
    "datetime_from_date_parsing": "a date and time, e.g. 2026-11-01T00:00:00Z",
}


def field_of(loc: tuple[Any, ...]) -> str:
    """The dotted field path of an error location, without pydantic's internal type names."""
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p[:1].isupper()))]
    return ".".join(parts)


def describe_error(err: Mapping[str, Any]) -> str:
    """One error of ``ValidationError.errors()`` as ``field: what it must be``."""
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    field = field_of(tuple(err.get("loc", ())))
    last = next(
        (str(p) for p in reversed(err.get("loc", ())) if isinstance(p, str) and p in FIELD_HINTS),
        "",
    )
    if kind == "string_pattern_mismatch":
        what = FIELD_HINTS.get(last, "does not have the expected form")
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        limit = next(iter(ctx.values()), "")
        what = f"{bound} {limit}"
    elif kind in ("string_too_short", "string_too_long", "too_short", "too_long"):
        what = FIELD_HINTS.get(last) or str(err.get("msg", "")).replace(
            "String should", "should"
        ).replace("List should", "should")
    elif kind == "value_error":
        what = str(err.get("msg", "")).removeprefix("Value error, ")
    elif kind == "literal_error":
        what = "one of " + str(ctx.get("expected", ""))
    elif kind == "enum":
        what = "one of " + str(ctx.get("expected", ""))
    else:
        what = _BY_TYPE.get(kind, str(err.get("msg", "")))
    if kind == "missing" and last in FIELD_HINTS:
        what = f"required: {FIELD_HINTS[last]}"
    return f"{field or 'input'}: {what}"


def describe(e: Any) -> str:
    """A pydantic ``ValidationError`` in words: one ``field: what it must be`` per problem."""
    return "; ".join(dict.fromkeys(describe_error(err) for err in e.errors()))
