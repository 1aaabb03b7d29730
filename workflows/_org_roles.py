"""The role requests of ``OnboardOrganization`` (updates ``submit_role``, ``create_role_for_me``,
``set_verification_level``): a mixin of :class:`workflows.onboarding.OnboardOrganizationWorkflow`,
kept apart so the entity workflow's module holds its main flow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic_core import ValidationError

    from bridgehead.messages import describe
    from bridgehead.models import (
        CreateRoleForMeInput,
        CreateRoleForMeInputV1,
        CreateRoleRequest,
        OnboardingState,
        OnboardOrganizationRun,
        OrgState,
        RecordRoleInput,
        SensitiveModel,
        SetVerificationLevelInput,
        SubmitRoleInput,
        UpdateResult,
        parse_role_arn,
    )

from workflows import _activities as acts
from workflows import _patches
from workflows._common import require_payload, root_message
from workflows._options import ONE_SHOT

#: States in which the organisation takes a (new) role.
_ROLE_STATES = {OrgState.AWAITING_ROLE, OrgState.ACTION_REQUIRED, OrgState.READY}


def _decode_keys(
    raw: RawValue | None, shape: type[SensitiveModel] = CreateRoleForMeInput
) -> CreateRoleForMeInput:
    """The keys of ``create_role_for_me``, or a refusal in words (never echoing a value).

    ``shape``: updates accepted before only temporary keys were required are replayed with the
    shape they were accepted under (:class:`CreateRoleForMeInputV1`), so their histories replay.
    """
    assert raw is not None
    try:
        keys = workflow.payload_converter().from_payload(raw.payload, shape)
    except ValidationError as e:
        raise ApplicationError(f"create_role_for_me: {describe(e)}", type="BadInput") from None
    except Exception as e:  # the converter's refusal of a plain or foreign payload  # noqa: BLE001
        raise ApplicationError(f"create_role_for_me refused: {e}", type="BadInput") from None
    if keys is None:
        raise ApplicationError("create_role_for_me needs temporary keys", type="BadInput")
    if not isinstance(keys, CreateRoleForMeInput):  # an update accepted under the older shape
        keys = CreateRoleForMeInput.model_construct(**dict(keys))
    return keys


class TakesRoles:
    """The customer's role arrives by ARN (``submit_role``) or is created with temporary keys
    (``create_role_for_me``); ``set_verification_level`` chooses strict or warn."""

    # Provided by the workflow class.
    _s: OnboardingState
    _input: OnboardOrganizationRun
    _busy: asyncio.Lock
    _role_changed: bool
    _fresh_role: bool
    _reverify: bool
    _set: Callable[[OrgState, str], None]
    _step: Callable[[str], None]

    def _check_can_take_role(self, role_arn: str | None = None) -> None:
        if self._s.state not in _ROLE_STATES:
            raise ApplicationError(
                f"organisation is {self._s.state.value}; a role can be submitted only while AWAITING_ROLE, ACTION_REQUIRED or READY"
            )
        if role_arn is None:
            return
        parts = parse_role_arn(role_arn)
        if parts["account"] != self._input.aws_account_id:
            raise ApplicationError(
                f"role {role_arn} is in account {parts['account']}, but this organisation is account {self._input.aws_account_id}"
            )
        expected = (
            self._s.artifacts.platform_principal_arn.split(":")[1] if self._s.artifacts else "aws"
        )
        if parts["partition"] != expected:
            raise ApplicationError(
                f"role {role_arn} is in partition {parts['partition']}; Bridgehead runs in {expected}"
            )

    @workflow.update
    async def submit_role(self, req: SubmitRoleInput | None = None) -> UpdateResult:
        """The customer created the role; record it and start verification."""
        assert req is not None  # the validator refused a missing payload
        async with self._busy:
            await acts.record_role.registry(
                RecordRoleInput(org_id=self._input.org_id, role_arn=req.role_arn)
            )
            self._s.role_arn = req.role_arn
            self._role_changed = True
            self._step(f"role submitted: {req.role_arn}")
        return UpdateResult(
            accepted=True, state=OrgState.VERIFYING, message="role recorded; verification started"
        )

    @submit_role.validator
    def _validate_submit_role(self, req: SubmitRoleInput | None = None) -> None:
        require_payload(req, "submit_role", '{"role_arn": "arn:aws:iam::<account>:role/<name>"}')
        assert req is not None
        self._check_can_take_role(req.role_arn)

    @workflow.update
    async def create_role_for_me(self, raw: RawValue = None) -> UpdateResult:  # type: ignore[assignment]
        """Create the role with the customer's one-time keys (encrypted payload; never stored).

        The payload is taken raw and decoded here and in the validator, so that keys sent as plain
        JSON (or encrypted for another workflow) are refused by the validator with a message that
        says so, before the update is accepted: nothing of them reaches history.
        """
        keys = _decode_keys(
            raw,
            CreateRoleForMeInput
            if _patches.patched("temporary-keys-only")
            else CreateRoleForMeInputV1,
        )
        async with self._busy:
            prev = self._s.state
            self._set(OrgState.CREATING_ROLE, "creating the role with the provided keys")
            try:
                result = await acts.create_customer_role(
                    CreateRoleRequest(org_id=self._input.org_id, credentials=keys),
                    summary="create the Bridgehead role in the customer account",
                    **ONE_SHOT,
                )
            except ActivityError as e:
                # Back to waiting: the customer can fix the keys and try again.
                self._s.last_error = root_message(e)
                self._set(prev, f"create-role-for-me failed: {self._s.last_error}")
                raise ApplicationError(self._s.last_error, type="CreateRoleFailed") from None
            self._s.role_arn = result.role_arn
            self._s.last_error = None
            self._role_changed = True
            self._fresh_role = True
            self._set(
                OrgState.VERIFYING,
                f"role {'adopted' if result.adopted else 'created'}: {result.role_arn}",
            )
        return UpdateResult(
            accepted=True,
            state=OrgState.VERIFYING,
            message=f"role {result.role_arn} ready; verification started",
        )

    @create_role_for_me.validator
    def _validate_create_role(self, raw: RawValue = None) -> None:  # type: ignore[assignment]
        require_payload(
            raw,
            "create_role_for_me",
            "temporary keys encrypted by `python -m starter onboard create-role`",
        )
        _decode_keys(raw)
        self._check_can_take_role()
        if self._busy.locked():
            raise ApplicationError(
                "another role operation is in progress; try again when it finishes"
            )

    @workflow.update
    def set_verification_level(self, req: SetVerificationLevelInput | None = None) -> UpdateResult:
        """``strict`` (default): grants beyond what Bridgehead needs fail verification; ``warn``:
        they are shown as warnings in ``status`` and the organisation can be READY. Re-verifies
        at once when a role is known."""
        assert req is not None  # the validator refused a missing payload
        self._s.verification_level = req.level
        self._step(f"verification level set to {req.level}")
        if self._s.role_arn is not None:
            self._reverify = True
        return UpdateResult(
            accepted=True,
            state=self._s.state,
            message=f"verification level is {req.level}"
            + ("; re-verifying" if self._s.role_arn else ""),
        )

    @set_verification_level.validator
    def _validate_set_verification_level(
        self, req: SetVerificationLevelInput | None = None
    ) -> None:
        require_payload(req, "set_verification_level", '{"level": "strict"}')
