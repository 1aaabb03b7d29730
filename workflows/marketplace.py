"""``MarketplaceSubscription``: an organisation's AWS Marketplace buyer, from registration to the
end of the subscription.

Started (id ``marketplace-{org_id}``) when a buyer arrives from AWS Marketplace with a
registration token: ``ResolveCustomer`` links the buyer to the organisation (state ``LINKED``),
then each subscription notification (signal ``notification``, from the queue consumer) moves the
organisation's billing state, which the meter and cluster validation read from the registry:

* ``subscribe-success`` -> ``SUBSCRIBED``: usage is metered.
* ``subscribe-fail`` -> ``SUBSCRIBE_FAILED``: not metered; the admin is told.
* ``unsubscribe-pending`` -> ``UNSUBSCRIBE_PENDING``: the meter closes and meters usage up to now at
  once (signal ``meter_now`` to ``billing-{org_id}``; AWS takes final records within the hour).
* ``unsubscribe-success`` -> ``UNSUBSCRIBED``: no more metering, no new clusters; the admin is told
  and the run ends.

History: a notification costs one signal, one or two activities and a workflow task (about ten
events); a subscription sees a handful, and the run continues as new when the server suggests it.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead import ids
    from bridgehead.models import (
        NOTIFICATION_STATES,
        MarketplaceEvent,
        MarketplaceLink,
        MarketplaceNotification,
        MarketplaceState,
        MarketplaceStatus,
        MarketplaceSubscriptionInput,
        MeteringNotice,
        NotifyInput,
        RecordMarketplaceStateInput,
        ResolveCustomerInput,
    )

from workflows import _activities as acts
from workflows._common import (
    bind_input,
    continued_by_itself,
    require_input,
    root_message,
    root_type,
    upsert,
)
from workflows._options import AWS_CALL, NOTIFY, REGISTRY

#: SNS message ids remembered to ignore redelivered notifications.
SEEN_LIMIT = 100


@workflow.defn(name="MarketplaceSubscription", failure_exception_types=[ValidationError])
class MarketplaceSubscriptionWorkflow:
    @workflow.init
    def __init__(self, input: MarketplaceSubscriptionInput | None = None) -> None:
        # A start without input fails in ``run`` with what to send (not a task retried forever).
        if input is None:
            self._status = MarketplaceStatus.model_construct(org_id="-")  # never reaches history
        else:
            carried = input.carried if continued_by_itself() else None
            self._status = carried or MarketplaceStatus(org_id=input.org_id)
        self._inbox: list[MarketplaceNotification] = []

    @workflow.signal
    def notification(self, n: MarketplaceNotification) -> None:
        """A subscription notification from AWS Marketplace (delivered by the queue consumer)."""
        self._inbox.append(n)

    @workflow.query
    def status(self) -> MarketplaceStatus:
        return self._status

    @workflow.run
    async def run(self, input: MarketplaceSubscriptionInput | None = None) -> MarketplaceStatus:
        require_input(
            input, "MarketplaceSubscription", '{"org_id": "acme", "registration_token": "..."}'
        )
        assert input is not None
        bind_input(ids.marketplace_workflow_id(input.org_id), carried={"carried": input.carried})
        upsert(org_id=input.org_id)
        s = self._status
        if input.carried is None:
            req = ResolveCustomerInput(
                org_id=input.org_id,
                registration_token=input.registration_token,
                allow_different_account=input.allow_different_account,
            )
            try:
                link: MarketplaceLink = await acts.resolve_marketplace_customer(
                    req, summary="resolve the AWS Marketplace buyer", **AWS_CALL
                )
            except ActivityError as e:
                s.last_error = root_message(e)
                raise ApplicationError(
                    f"Marketplace registration of {input.org_id} refused: {s.last_error}",
                    type=root_type(e) or "MarketplaceRegistrationRefused",
                ) from None
            s.state, s.customer_aws_account_id = link.state, link.customer_aws_account_id
            s.customer_identifier, s.product_code = link.customer_identifier, link.product_code
            s.events.append(
                MarketplaceEvent(
                    at=workflow.now(),
                    action="registered",
                    state=link.state,
                    note=f"AWS account {link.customer_aws_account_id}",
                )
            )
        while True:
            await workflow.wait_condition(
                lambda: bool(self._inbox) or workflow.info().is_continue_as_new_suggested()
            )
            if not self._inbox:
                break
            await self._apply(self._inbox.pop(0), input.org_id)
            if s.state == MarketplaceState.UNSUBSCRIBED:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return s
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(input.model_copy(update={"carried": s}))

    async def _apply(self, n: MarketplaceNotification, org_id: str) -> None:
        s = self._status
        if n.message_id and n.message_id in s.seen:
            return  # redelivered by SNS/SQS: applied already
        if n.customer_identifier != s.customer_identifier or n.product_code != s.product_code:
            workflow.logger.warning(
                f"ignored a {n.action} notification for another buyer or product",
                extra={"org_id": org_id},
            )
            return
        state = NOTIFICATION_STATES[n.action]
        now = workflow.now()
        try:
            notice: MeteringNotice | None = await acts.record_marketplace_state(
                RecordMarketplaceStateInput(
                    org_id=org_id,
                    state=state,
                    reason=n.action,
                    at=now,
                    notification=n,
                    subscription=workflow.info().first_execution_run_id,
                ),
                summary=f"{n.action}: billing state {state.value}",
                **REGISTRY,
            )
        except ActivityError as e:
            if root_type(e) != "NotificationUnverified":
                raise
            # Anyone can send a signal: only what the Marketplace queue delivered is applied.
            workflow.logger.warning(root_message(e), extra={"org_id": org_id})
            return
        s.state = state
        note = ""
        if n.action == "unsubscribe-pending":
            # AWS takes the last usage records within an hour: the meter closes and sends them now.
            try:
                await workflow.get_external_workflow_handle(ids.billing_workflow_id(org_id)).signal(
                    "meter_now"
                )
                note = "final metering requested"
            except Exception as e:  # noqa: BLE001 - an ended meter has nothing left to send
                note = f"final metering not requested: {e}"
                workflow.logger.warning(f"unsubscribe-pending: {note}", extra={"org_id": org_id})
        if n.action in ("unsubscribe-success", "subscribe-fail"):
            workflow.logger.warning(
                f"AWS Marketplace {n.action} for {org_id}: billing state {state.value}",
                extra={"org_id": org_id},
            )
        s.events.append(MarketplaceEvent(at=now, action=n.action, state=state, note=note))
        if n.message_id:
            s.seen = [*s.seen, n.message_id][-SEEN_LIMIT:]
        if notice is not None:
            try:
                await acts.notify(
                    NotifyInput(
                        to=notice.to,
                        subject=notice.subject,
                        body=notice.body,
                        idempotency_key=notice.idempotency_key,
                    ),
                    summary="tell the admin",
                    **NOTIFY,
                )
            except (
                ActivityError
            ) as e:  # the state is recorded; an email must not block the subscription
                workflow.logger.warning(
                    f"could not email the admin: {root_message(e)}", extra={"org_id": org_id}
                )
