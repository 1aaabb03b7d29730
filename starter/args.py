"""Parser pieces every command family uses: ``--json`` accepted before or after the subcommand,
leaf commands with help text, and usage errors the CLI can report as a JSON document too."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

JSON_HELP = "machine-readable output: exactly one JSON document on stdout"


class UsageError(Exception):
    """Bad flags or arguments (exit code 2), raised instead of argparse's own exit."""

    def __init__(self, usage: str, prog: str, message: str) -> None:
        super().__init__(message)
        self.usage = usage
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors reach ``starter.cli.main`` (which prints them as argparse
    does, exit code 2, plus the error document in ``--json`` mode). Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.format_usage(), self.prog, message)


def json_flag() -> argparse.ArgumentParser:
    """A parent parser with ``--json`` for leaf commands. Its default is SUPPRESS, so a leaf that
    was not given ``--json`` leaves the top-level value (``bridgehead --json cluster ...``) alone."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    return parent


_JSON = json_flag()

Command = Callable[[argparse.Namespace], Awaitable[int]]


def leaf(sub: Any, name: str, help: str, fn: Command) -> argparse.ArgumentParser:
    """A command (``cluster create``): its help in the parent's list and as its description,
    ``--json`` after it, and the coroutine that runs it."""
    p = sub.add_parser(name, help=help, description=help, parents=[_JSON])
    p.set_defaults(fn=fn)
    return p


def group(sub: Any, name: str, help: str) -> Any:
    """A command family (``cluster``) whose subcommands are required."""
    p = sub.add_parser(name, help=help, description=help)
    return p.add_subparsers(dest="sub", required=True)
