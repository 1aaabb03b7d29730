"""Shared base models, constrained types and constants of the payload models.

Side-effect free: stdlib + pydantic only, so workflow modules pass it through the sandbox.
Every model forbids unknown keys, so a typo in ``temporal workflow start --input`` JSON is a
clear error instead of a silently ignored field.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
)

from bridgehead.ids import CLUSTER_NAME_RE, ORG_ID_LENGTH, ORG_ID_RE

DEFAULT_TASK_QUEUE = "bridgehead"
DEFAULT_REGIONS: tuple[str, ...] = ("us-east-1", "us-east-2", "us-west-1", "us-west-2")
#: Commercial regions Bridgehead knows about (a deployment narrows this in settings).
SUPPORTED_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-south-1",
    "sa-east-1",
)

ACCOUNT_ID_RE = r"^\d{12}$"
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
ROLE_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?P<path>(?:[\w+=,.@-]+/)*)(?P<name>[\w+=,.@-]{1,64})$"
)


def _check_region(v: str) -> str:
    if v not in SUPPORTED_REGIONS:
        raise ValueError(f"unsupported region {v!r}; supported: {', '.join(SUPPORTED_REGIONS)}")
    return v


OrgId = Annotated[
    str,
    StringConstraints(pattern=ORG_ID_RE, min_length=ORG_ID_LENGTH[0], max_length=ORG_ID_LENGTH[1]),
]
ClusterName = Annotated[str, StringConstraints(pattern=CLUSTER_NAME_RE)]
AccountId = Annotated[str, StringConstraints(pattern=ACCOUNT_ID_RE)]
Region = Annotated[str, AfterValidator(_check_region)]


class Model(BaseModel):
    """Base for all Bridgehead payloads: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class SensitiveModel(Model):
    """Marker base: payloads of these types are encrypted by the payload codec.

    The data converter tags them (see :mod:`bridgehead.converter`) and the codec encrypts exactly
    the tagged payloads with a key that the Web UI's codec endpoint never holds. The converter
    refuses to build one from a payload that did not arrive encrypted (plain JSON typed into the
    CLI or UI), and validation errors never echo the input (``hide_input_in_errors``).
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    #: Refuse the payload unless it arrived encrypted (customer keys). A type whose value may also
    #: be typed into the Web UI (a Marketplace registration token) sets this false: encrypted when
    #: sent by Bridgehead's clients, accepted as plain JSON from elsewhere.
    plain_refused: ClassVar[bool] = True
