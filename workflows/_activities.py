"""Typed stubs of every activity the workflows call, boto3-free (the sandbox never imports an
activity module). ``await acts.validate_cluster(req, summary=..., **REGISTRY)`` checks the
argument and result types for the type checker and names the activity once; the test
``tests/test_activity_stubs.py`` proves every stub is registered by the worker under the same
name with the same argument and result types.

Generated from the activity classes, then kept by hand; group by the class that implements them.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from temporalio import workflow

from workflows import _patches
from workflows._options import REGISTRY, REGISTRY_LOCAL

with workflow.unsafe.imports_passed_through():
    from bridgehead.models import (
        BeginReleaseInput,
        BillingReport,
        BillingReportInput,
        CloseBillingPeriodsInput,
        CloseBillingPeriodsResult,
        ClusterPlan,
        ConsoleTail,
        ConsoleTailInput,
        CopyImageInput,
        CorrectResult,
        CpuQuery,
        CpuReading,
        CreateRoleRequest,
        CreateRoleResult,
        DropboxParsed,
        DropboxRequestInput,
        DropboxResultInput,
        DropboxScan,
        DropboxWatchInput,
        FindImageInput,
        FindImageResult,
        FoundationRecord,
        FoundationStates,
        FoundationStatesInput,
        FoundationTemplateInput,
        ImageInRegion,
        Leftovers,
        LeftoversInput,
        MarketplaceLink,
        MeteringNotice,
        MeterUsageInput,
        MeterUsageResult,
        NotifyInput,
        OrgClustersInput,
        OrgRegions,
        OrgRegionsInput,
        PowerInput,
        PowerResult,
        QuotaCheckInput,
        QuotaReport,
        RecordCorrectionInput,
        RecordMarketplaceStateInput,
        RecordRoleInput,
        RegionClusters,
        RegionClustersInput,
        RegisterClusterInput,
        RegisterOrgInput,
        RegisterOrgResult,
        ReleaseImageInput,
        ReleaseOrgs,
        ReleaseOrgsInput,
        ReleasePlan,
        RenderedTemplate,
        ResizeStackInput,
        ResolveCustomerInput,
        ReverifyInput,
        RevokeReplacedInput,
        RevokeReplacedResult,
        SetOrgBudgetInput,
        SetOrgStateInput,
        SharedImages,
        ShareImageInput,
        ShareImageResult,
        StackPoll,
        StackRef,
        StackRequest,
        ValidateClusterInput,
        VerificationReport,
        VerifyRoleInput,
    )

ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")


class ActivityStub(Generic[ArgT, ResultT]):
    """One activity: its registered name, argument type and result type."""

    def __init__(self, name: str, arg: Any, result: Any, implemented_by: str) -> None:
        self.name, self.arg, self.result, self.implemented_by = name, arg, result, implemented_by

    async def __call__(self, arg: ArgT, **options: Any) -> ResultT:
        """Run the activity; ``options`` are ``workflow.execute_activity``'s (``summary``, and an
        option set from ``workflows/_options.py``)."""
        return await workflow.execute_activity(self.name, arg, result_type=self.result, **options)  # type: ignore[no-any-return]

    async def registry(self, arg: ArgT, **options: Any) -> ResultT:
        """Run a short registry call (or a rendering): a local activity with ``REGISTRY_LOCAL`` on
        runs that reach it under the patch :data:`LOCAL_REGISTRY`, the activity with ``REGISTRY``
        it always was on runs recorded before (their histories replay unchanged)."""
        if _patches.patched(LOCAL_REGISTRY):
            return await workflow.execute_local_activity(  # type: ignore[no-any-return]
                self.name, arg, result_type=self.result, **options, **REGISTRY_LOCAL
            )
        return await self(arg, **options, **REGISTRY)


#: The patch under which registry calls became local activities (issue 23).
LOCAL_REGISTRY = "local-registry-calls"


# --- BillingActivities -------------------------------------------------------------------------
billing_report: ActivityStub[BillingReportInput, BillingReport] = ActivityStub(
    "billing_report", BillingReportInput, BillingReport, "BillingActivities"
)
close_billing_periods: ActivityStub[CloseBillingPeriodsInput, CloseBillingPeriodsResult] = (
    ActivityStub(
        "close_billing_periods",
        CloseBillingPeriodsInput,
        CloseBillingPeriodsResult,
        "BillingActivities",
    )
)
meter_usage: ActivityStub[MeterUsageInput, MeterUsageResult] = ActivityStub(
    "meter_usage", MeterUsageInput, MeterUsageResult, "BillingActivities"
)
record_correction: ActivityStub[RecordCorrectionInput, CorrectResult] = ActivityStub(
    "record_correction", RecordCorrectionInput, CorrectResult, "BillingActivities"
)

# --- BudgetActivities --------------------------------------------------------------------------
set_org_budget: ActivityStub[SetOrgBudgetInput, None] = ActivityStub(
    "set_org_budget", SetOrgBudgetInput, None, "BudgetActivities"
)

# --- ClusterActivities -------------------------------------------------------------------------
head_console_tail: ActivityStub[ConsoleTailInput, ConsoleTail] = ActivityStub(
    "head_console_tail", ConsoleTailInput, ConsoleTail, "ClusterActivities"
)
notify: ActivityStub[NotifyInput, bool] = ActivityStub(
    "notify", NotifyInput, bool, "ClusterActivities"
)
register_cluster: ActivityStub[RegisterClusterInput, None] = ActivityStub(
    "register_cluster", RegisterClusterInput, None, "ClusterActivities"
)
validate_cluster: ActivityStub[ValidateClusterInput, ClusterPlan] = ActivityStub(
    "validate_cluster", ValidateClusterInput, ClusterPlan, "ClusterActivities"
)

# --- DropboxActivities -------------------------------------------------------------------------
cluster_owner: ActivityStub[DropboxParsed, str | None] = ActivityStub(
    "cluster_owner", DropboxParsed, str | None, "DropboxActivities"
)
delete_dropbox_request: ActivityStub[DropboxRequestInput, None] = ActivityStub(
    "delete_dropbox_request", DropboxRequestInput, None, "DropboxActivities"
)
load_dropbox_request: ActivityStub[DropboxRequestInput, DropboxParsed] = ActivityStub(
    "load_dropbox_request", DropboxRequestInput, DropboxParsed, "DropboxActivities"
)
scan_inbox: ActivityStub[DropboxWatchInput, DropboxScan] = ActivityStub(
    "scan_inbox", DropboxWatchInput, DropboxScan, "DropboxActivities"
)
write_dropbox_result: ActivityStub[DropboxResultInput, None] = ActivityStub(
    "write_dropbox_result", DropboxResultInput, None, "DropboxActivities"
)

# --- ImageReleaseActivities --------------------------------------------------------------------
begin_image_release: ActivityStub[BeginReleaseInput, ReleasePlan] = ActivityStub(
    "begin_image_release", BeginReleaseInput, ReleasePlan, "ImageReleaseActivities"
)
org_shared_images: ActivityStub[OrgRegionsInput, SharedImages] = ActivityStub(
    "org_shared_images", OrgRegionsInput, SharedImages, "ImageReleaseActivities"
)
record_release_image: ActivityStub[ReleaseImageInput, None] = ActivityStub(
    "record_release_image", ReleaseImageInput, None, "ImageReleaseActivities"
)
release_orgs: ActivityStub[ReleaseOrgsInput, ReleaseOrgs] = ActivityStub(
    "release_orgs", ReleaseOrgsInput, ReleaseOrgs, "ImageReleaseActivities"
)
revoke_replaced_image: ActivityStub[RevokeReplacedInput, RevokeReplacedResult] = ActivityStub(
    "revoke_replaced_image", RevokeReplacedInput, RevokeReplacedResult, "ImageReleaseActivities"
)


# --- GuardrailActivities -----------------------------------------------------------------------
head_cpu: ActivityStub[CpuQuery, CpuReading] = ActivityStub(
    "head_cpu", CpuQuery, CpuReading, "GuardrailActivities"
)
start_cluster_nodes: ActivityStub[PowerInput, PowerResult] = ActivityStub(
    "start_cluster_nodes", PowerInput, PowerResult, "GuardrailActivities"
)
stop_cluster_nodes: ActivityStub[PowerInput, PowerResult] = ActivityStub(
    "stop_cluster_nodes", PowerInput, PowerResult, "GuardrailActivities"
)

# --- ImageActivities ---------------------------------------------------------------------------
copy_platform_image: ActivityStub[CopyImageInput, ImageInRegion] = ActivityStub(
    "copy_platform_image", CopyImageInput, ImageInRegion, "ImageActivities"
)
find_platform_image: ActivityStub[FindImageInput, FindImageResult] = ActivityStub(
    "find_platform_image", FindImageInput, FindImageResult, "ImageActivities"
)
org_regions: ActivityStub[OrgRegionsInput, OrgRegions] = ActivityStub(
    "org_regions", OrgRegionsInput, OrgRegions, "ImageActivities"
)
revoke_image: ActivityStub[ShareImageInput, ShareImageResult] = ActivityStub(
    "revoke_image", ShareImageInput, ShareImageResult, "ImageActivities"
)
share_image: ActivityStub[ShareImageInput, ShareImageResult] = ActivityStub(
    "share_image", ShareImageInput, ShareImageResult, "ImageActivities"
)
wait_image_available: ActivityStub[ImageInRegion, ImageInRegion] = ActivityStub(
    "wait_image_available", ImageInRegion, ImageInRegion, "ImageActivities"
)

# --- MarketplaceActivities ---------------------------------------------------------------------
record_marketplace_state: ActivityStub[RecordMarketplaceStateInput, MeteringNotice | None] = (
    ActivityStub(
        "record_marketplace_state",
        RecordMarketplaceStateInput,
        MeteringNotice | None,
        "MarketplaceActivities",
    )
)
resolve_marketplace_customer: ActivityStub[ResolveCustomerInput, MarketplaceLink] = ActivityStub(
    "resolve_marketplace_customer", ResolveCustomerInput, MarketplaceLink, "MarketplaceActivities"
)

# --- OnboardingActivities ----------------------------------------------------------------------
create_customer_role: ActivityStub[CreateRoleRequest, CreateRoleResult] = ActivityStub(
    "create_customer_role", CreateRoleRequest, CreateRoleResult, "OnboardingActivities"
)
record_role: ActivityStub[RecordRoleInput, None] = ActivityStub(
    "record_role", RecordRoleInput, None, "OnboardingActivities"
)
register_organization: ActivityStub[RegisterOrgInput, RegisterOrgResult] = ActivityStub(
    "register_organization", RegisterOrgInput, RegisterOrgResult, "OnboardingActivities"
)
set_org_state: ActivityStub[SetOrgStateInput, None] = ActivityStub(
    "set_org_state", SetOrgStateInput, None, "OnboardingActivities"
)
verify_role: ActivityStub[VerifyRoleInput, VerificationReport] = ActivityStub(
    "verify_role", VerifyRoleInput, VerificationReport, "OnboardingActivities"
)

# --- RegionActivities --------------------------------------------------------------------------
begin_foundation_delete: ActivityStub[RegionClustersInput, RegionClusters] = ActivityStub(
    "begin_foundation_delete", RegionClustersInput, RegionClusters, "RegionActivities"
)
check_vcpu_quota: ActivityStub[QuotaCheckInput, QuotaReport] = ActivityStub(
    "check_vcpu_quota", QuotaCheckInput, QuotaReport, "RegionActivities"
)
foundation_states: ActivityStub[FoundationStatesInput, FoundationStates] = ActivityStub(
    "foundation_states", FoundationStatesInput, FoundationStates, "RegionActivities"
)
find_leftovers: ActivityStub[LeftoversInput, Leftovers] = ActivityStub(
    "find_leftovers", LeftoversInput, Leftovers, "RegionActivities"
)
org_live_clusters: ActivityStub[OrgClustersInput, RegionClusters] = ActivityStub(
    "org_live_clusters", OrgClustersInput, RegionClusters, "RegionActivities"
)
record_foundation: ActivityStub[FoundationRecord, None] = ActivityStub(
    "record_foundation", FoundationRecord, None, "RegionActivities"
)
render_foundation_template: ActivityStub[FoundationTemplateInput, RenderedTemplate] = ActivityStub(
    "render_foundation_template", FoundationTemplateInput, RenderedTemplate, "RegionActivities"
)
sweep_foundation_leftovers: ActivityStub[LeftoversInput, Leftovers] = ActivityStub(
    "sweep_foundation_leftovers", LeftoversInput, Leftovers, "RegionActivities"
)

# --- ScheduleActivities ------------------------------------------------------------------------
delete_reverify_schedule: ActivityStub[ReverifyInput, bool] = ActivityStub(
    "delete_reverify_schedule", ReverifyInput, bool, "ScheduleActivities"
)
ensure_reverify_schedule: ActivityStub[ReverifyInput, str] = ActivityStub(
    "ensure_reverify_schedule", ReverifyInput, str, "ScheduleActivities"
)

# --- StackActivities ---------------------------------------------------------------------------
check_stack: ActivityStub[StackRef, StackPoll] = ActivityStub(
    "check_stack", StackRef, StackPoll, "StackActivities"
)
create_stack: ActivityStub[StackRequest, StackPoll] = ActivityStub(
    "create_stack", StackRequest, StackPoll, "StackActivities"
)
delete_stack: ActivityStub[StackRef, None] = ActivityStub(
    "delete_stack", StackRef, None, "StackActivities"
)
poll_stack: ActivityStub[StackRef, StackPoll] = ActivityStub(
    "poll_stack", StackRef, StackPoll, "StackActivities"
)
resize_stack: ActivityStub[ResizeStackInput, StackPoll] = ActivityStub(
    "resize_stack", ResizeStackInput, StackPoll, "StackActivities"
)

#: Every stub, for the registration test.
ALL: list[ActivityStub[Any, Any]] = [
    begin_image_release,
    org_shared_images,
    record_release_image,
    release_orgs,
    revoke_replaced_image,
    begin_foundation_delete,
    billing_report,
    check_stack,
    check_vcpu_quota,
    close_billing_periods,
    cluster_owner,
    copy_platform_image,
    create_customer_role,
    create_stack,
    delete_dropbox_request,
    delete_reverify_schedule,
    delete_stack,
    ensure_reverify_schedule,
    find_leftovers,
    find_platform_image,
    foundation_states,
    head_console_tail,
    head_cpu,
    load_dropbox_request,
    meter_usage,
    notify,
    org_live_clusters,
    org_regions,
    poll_stack,
    record_correction,
    record_foundation,
    record_marketplace_state,
    record_role,
    register_cluster,
    register_organization,
    render_foundation_template,
    resize_stack,
    resolve_marketplace_customer,
    revoke_image,
    scan_inbox,
    set_org_budget,
    set_org_state,
    share_image,
    start_cluster_nodes,
    stop_cluster_nodes,
    sweep_foundation_leftovers,
    validate_cluster,
    verify_role,
    wait_image_available,
    write_dropbox_result,
]
