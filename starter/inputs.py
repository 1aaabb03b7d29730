"""Input the CLI reads: JSON (inline or ``@file``) into a public input model, and pydantic errors
in words (one line per field, exit code 2)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from starter.output import BAD_INPUT, CliError


def invalid(e: ValidationError, what: str) -> CliError:
    """A pydantic error as the CLI shows it: one line per field, exit code 2."""
    from bridgehead.messages import describe_error

    lines = [f"  {describe_error(err)}" for err in e.errors()]
    return CliError(f"invalid {what}:\n" + "\n".join(lines), BAD_INPUT)


def parse_input(model: type[BaseModel], raw: str) -> BaseModel:
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as e:
            raise CliError(f"cannot read input file {raw[1:]}: {e.strerror}", BAD_INPUT) from None
    else:
        text = raw
    try:
        return model.model_validate_json(text)
    except ValidationError as e:
        raise invalid(e, model.__name__) from None
