"""``python -m starter``: start, steer and inspect Bridgehead workflows; run the local stack.

Exit codes: 0 success; 1 the workflow/operation failed; 2 bad input; 3 cannot reach Temporal;
130 interrupted. Human output by default, ``--json`` (before or after the subcommand) for scripts:
exactly one JSON document per command. Installed as the ``bridgehead`` command too;
``bridgehead completion bash|zsh`` prints a shell-completion script (shtab).

The parser and exit codes live in ``starter.cli``, the commands in ``starter.commands`` (one
module per family), shared pieces in ``starter.client`` (Temporal) and ``starter.output``.
"""

from starter.cli import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
