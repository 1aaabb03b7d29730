"""The ``bridgehead`` / ``python -m starter`` command line: the parser built from the command
families in ``starter.commands``, and the one place that turns outcomes into exit codes.

Exit codes: 0 success; 1 the workflow/operation failed; 2 bad input; 3 cannot reach Temporal;
130 interrupted. A reader that goes away (``bridgehead ... | head -1``) ends the command quietly.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

from pydantic import ValidationError

from starter.args import JSON_HELP, Parser, UsageError
from starter.inputs import invalid
from starter.output import BAD_INPUT, FAILED, INTERRUPTED, OK, CliError, Output


def build_parser(prog: str = "python -m starter") -> Parser:
    from starter.commands import FAMILIES

    p = Parser(prog=prog, description="Start and steer Bridgehead workflows.")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    sub = p.add_subparsers(dest="cmd", required=True)
    for family in FAMILIES:
        family.register(sub)
    return p


def error_message(e: BaseException) -> str:
    """The innermost cause's message (a workflow failure wraps the activity's error)."""
    msg = getattr(e, "message", None) or str(e)
    cause = getattr(e, "cause", None)
    while cause is not None:
        msg = getattr(cause, "message", None) or str(cause)
        cause = getattr(cause, "cause", None)
    return f"{type(e).__name__}: {msg}"


def quiet_stdout() -> None:
    """The reader went away: later writes (and the flush at exit) go nowhere instead of failing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def last_words(write: Callable[[], None]) -> None:
    """The final document: a reader gone by then does not change the command's exit code."""
    try:
        write()
    except BrokenPipeError:
        quiet_stdout()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Output("--json" in argv)
    try:
        return run_command(argv, out)
    except BrokenPipeError:
        quiet_stdout()
        return OK


def run_command(argv: list[str], out: Output) -> int:
    def failed(message: str, code: int) -> int:
        print(f"error: {message}", file=sys.stderr)
        last_words(lambda: out.fail(message, code))
        return code

    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        sys.stderr.write(e.usage)
        message = str(e)
        print(f"{e.prog}: error: {message}", file=sys.stderr)
        last_words(lambda: out.fail(message, BAD_INPUT))
        return BAD_INPUT
    out.json = args.json
    args.output = out
    try:
        code = asyncio.run(args.fn(args))
    except BrokenPipeError:
        raise
    except CliError as e:
        return failed(str(e), e.code)
    except ValidationError as e:  # a model built from flags (onboard start, cluster create...)
        return failed(str(invalid(e, e.title)), BAD_INPUT)
    except KeyboardInterrupt:
        last_words(lambda: out.fail("interrupted", INTERRUPTED))
        return INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the CLI reports, it does not dump tracebacks
        return failed(error_message(e), FAILED)
    last_words(out.finish)
    return code


def run() -> None:
    """Console entry point. Exits with ``os._exit`` after flushing: the SDK's core runtime can abort
    during interpreter shutdown (sdk-python#300) and turn a success into exit code 134."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    try:
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)
