"""Every identifier Bridgehead derives: workflow and schedule ids, stack, role, bucket and
resource names. Pure (stdlib only), so workflows, activities, the starter, the drop-box and the
tests all compute names the same way.

Naming contract (see ``docs/`` and the README's tables):

* Workflow ids are computed from the workflow's input and checked by the workflow at start
  (:func:`check_workflow_id`): a start under any other id fails at once, naming both values.
* Every AWS resource name of an organisation starts with :func:`org_prefix`, ``bridgehead-{org}--``.
  Organisation ids never contain ``--`` nor end with ``-`` (see ``ORG_ID_RE``), so the first ``--``
  after ``bridgehead-`` always ends the organisation id: ``bridgehead-acme--*`` (the scope of acme's
  policies) can never match a name of ``acme-prod``, and a cluster stack (``…--cluster-{name}``)
  can never be named like a foundation stack (``…--foundation-{region}``).
"""

from __future__ import annotations

import hashlib
import re

#: Organisation ids: lower-case slug of 3-32 characters (``ORG_ID_LENGTH``) that starts with a
#: letter, ends with a letter or digit and never holds ``--`` (the name delimiter below).
ORG_ID_RE = r"^[a-z](?:-?[a-z0-9])+$"
ORG_ID_LENGTH = (3, 32)
#: Cluster names (DESIGN.md).
CLUSTER_NAME_RE = r"^[A-Za-z][-A-Za-z0-9]{0,59}$"

#: Schedule that runs ``DropboxWatch``.
DROPBOX_WATCH_SCHEDULE = "dropbox-watch"


def hyphen_prefixes(org_id: str) -> list[str]:
    """The shorter organisation ids that ``org_id`` extends at a hyphen (``a-b-c``: ``a``,
    ``a-b``). Organisation ids are kept free of each other's hyphen prefixes (registration refuses
    ``acme-prod`` once ``acme`` exists, and the other way round), because workflow ids join ids
    with single hyphens: ``cluster-{org}-{name}`` for org ``acme`` and cluster ``prod-db`` equals
    org ``acme-prod``'s cluster ``db``, and ``org-{org}-images`` of ``acme`` is ``org-{org}`` of
    ``acme-images``."""
    parts = org_id.split("-")
    return ["-".join(parts[:i]) for i in range(1, len(parts))]


class WorkflowIdMismatch(ValueError):
    """A workflow was started under an id that its input does not produce."""


# --- workflow and schedule ids ---------------------------------------------------------------
def org_workflow_id(org_id: str) -> str:
    """``OnboardOrganization``: ``org-{org_id}``."""
    return f"org-{org_id}"


def verify_workflow_id(org_id: str, n: int) -> str:
    """``VerifyRole``, the n-th verification of an organisation: ``org-{org_id}-verify-{n}``."""
    return f"org-{org_id}-verify-{n}"


def images_workflow_id(org_id: str) -> str:
    """``ShareImages``: ``org-{org_id}-images``."""
    return f"org-{org_id}-images"


def region_workflow_id(org_id: str, region: str) -> str:
    """``ProvisionRegion``: ``org-{org_id}-region-{region}``."""
    return f"org-{org_id}-region-{region}"


def cleanup_workflow_id(org_id: str, region: str) -> str:
    """``CleanupRegion``: ``org-{org_id}-cleanup-{region}``."""
    return f"org-{org_id}-cleanup-{region}"


def cluster_workflow_id(org_id: str, name: str) -> str:
    """``ClusterLifecycle``: ``cluster-{org_id}-{name}``."""
    return f"cluster-{org_id}-{name}"


def billing_workflow_id(org_id: str) -> str:
    """``BillingMeter``: ``billing-{org_id}``."""
    return f"billing-{org_id}"


def marketplace_workflow_id(org_id: str) -> str:
    """``MarketplaceSubscription``: ``marketplace-{org_id}``."""
    return f"marketplace-{org_id}"


def billing_report_workflow_id(org_id: str, month: str | None) -> str:
    """``BillingReport``: ``report-{org_id}-{YYYY-MM|all}`` (a read: a new run per request, a
    concurrent request joins the running one)."""
    return f"report-{org_id}-{month or 'all'}"


def image_release_workflow_id(version: str) -> str:
    """``ImageRelease``: ``image-release-{version}``."""
    return f"image-release-{version}"


def reverify_schedule_id(org_id: str) -> str:
    """The daily re-verification Schedule (it starts ``ReverifyOrganization``)."""
    return f"org-{org_id}-reverify"


def dropbox_request_id(key: str, etag: str) -> str:
    """``DropboxRequest``: one id per uploaded version of a request file (exactly once)."""
    return "dropbox-" + hashlib.sha256(f"{key}\n{etag}".encode()).hexdigest()[:32]


def check_workflow_id(actual: str, expected: str, *, scheduled: bool = False) -> None:
    """Refuse a workflow started under an id its input does not produce.

    ``scheduled``: the run is started by a Schedule (or by hand in its place), which appends
    ``-{suffix}`` to the configured id; the id must then be ``expected`` or start with
    ``expected-``.
    """
    if actual == expected or (scheduled and actual.startswith(expected + "-")):
        return
    raise WorkflowIdMismatch(
        f"workflow id {actual!r} does not match its input: this input must be started as {expected!r}"
        + (" (or with a suffix, as its Schedule does)" if scheduled else "")
    )


def check_verify_workflow_id(actual: str, org_id: str) -> None:
    """``VerifyRole`` ids carry a sequence number: ``org-{org_id}-verify-{n}``."""
    prefix = f"org-{org_id}-verify-"
    if not (actual.startswith(prefix) and re.fullmatch(r"[1-9][0-9]{0,11}", actual[len(prefix) :])):
        raise WorkflowIdMismatch(
            f"workflow id {actual!r} does not match its input: "
            f"start VerifyRole for {org_id!r} as {prefix}<n> (n = 1, 2, ...)"
        )


# --- AWS resource names ------------------------------------------------------------------------
def org_prefix(org_id: str) -> str:
    """The prefix of every AWS resource name of an organisation (and of its policy scopes)."""
    return f"bridgehead-{org_id}--"


def foundation_stack(org_id: str, region: str) -> str:
    return f"{org_prefix(org_id)}foundation-{region}"


def cluster_stack(org_id: str, name: str) -> str:
    return f"{org_prefix(org_id)}cluster-{name}"


def cluster_role_name(org_id: str, region: str) -> str:
    """The cluster node role (and instance profile) of a foundation."""
    return f"{org_prefix(org_id)}node-{region}"


def customer_role_name(base: str, org_id: str, shared_account: bool) -> str:
    """The role Bridgehead assumes in the customer account. One organisation per account keeps
    the configured name (``BridgeheadAccess``); an account explicitly shared by several
    organisations gets one role per organisation."""
    return f"{base}-{org_id}" if shared_account else base


def foundation_bucket(org_id: str, region: str, account_id: str) -> str:
    """The foundation's S3 bucket (globally unique, at most 63 characters). Long org ids are
    shortened with a digest of the full triple, never simply cut (that would collide)."""
    name = f"bh-{org_id}--{region}-{account_id}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"bh-{org_id[: 63 - 3 - 2 - 1 - 10 - 1 - 12]}--{digest}-{account_id}"


def session_name(org_id: str) -> str:
    """RoleSessionName used when Bridgehead assumes an organisation's role (CloudTrail shows it)."""
    return f"bridgehead-{org_id}"[:64]


# --- stack events ---------------------------------------------------------------------------------
#: A CloudFormation stack id: ``arn:aws:cloudformation:{region}:{account}:stack/{name}/{uuid}``.
STACK_ID_RE = re.compile(
    r"^arn:aws[-a-z]*:cloudformation:([a-z]{2}(?:-[a-z]+)+-[0-9]):[0-9]{12}:stack/([A-Za-z][-A-Za-z0-9]{0,127})/[-0-9a-f]{1,64}$"
)


def stack_of_id(stack_id: str) -> tuple[str, str] | None:
    """``(region, stack name)`` of a well-formed stack id, else None."""
    m = STACK_ID_RE.fullmatch(stack_id)
    return (m.group(1), m.group(2)) if m else None


def stack_waiter(stack_name: str, region: str) -> str | None:
    """The workflow that waits on a Bridgehead stack (the inverse of :func:`cluster_stack` and
    :func:`foundation_stack`): the consumer of stack events signals it. None for any other name."""
    m = re.fullmatch(r"bridgehead-([a-z](?:-?[a-z0-9])+)--(cluster|foundation)-(.+)", stack_name)
    if m is None:
        return None
    org, kind, rest = m.groups()
    if kind == "cluster":
        ok = re.fullmatch(CLUSTER_NAME_RE, rest) is not None
        return cluster_workflow_id(org, rest) if ok else None
    return region_workflow_id(org, region) if rest == region else None
