"""``starter image release``: malformed flags are refused before any connection, with the fix."""

from __future__ import annotations

import pytest

from starter.commands.image import parse_images
from starter.output import BAD_INPUT, CliError
from tests.test_cli import cli


def test_images_are_parsed_per_region():
    assert parse_images(["us-east-1=ami-0123456789abcdef0", "us-west-2=ami-0fedcba987654321f"]) == {
        "us-east-1": "ami-0123456789abcdef0",
        "us-west-2": "ami-0fedcba987654321f",
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["us-east-1"], "expected REGION=AMI"),
        (["us-east-1=ami-0123456789abcdef0", "us-east-1=ami-0fedcba987654321f"], "given twice"),
    ],
)
def test_malformed_images_are_refused(flags: list[str], message: str):
    with pytest.raises(CliError, match=message):
        parse_images(flags)


def test_bad_version_or_image_id_is_bad_input_without_a_server():
    for argv in (
        ["image", "release", "v 2", "--image", "us-east-1=ami-0123456789abcdef0"],
        ["image", "release", "v2", "--image", "us-east-1=not-an-ami"],
    ):
        # No Temporal address reachable: refused before connecting.
        out = cli(*argv, env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
        assert out.returncode == BAD_INPUT, (argv, out.stdout, out.stderr)
