"""The ``mailer`` console script and ``python -m mailer``: the CLI, started with the garbage
collector off until the command is loaded (:mod:`mailer.heap` says why)."""

from __future__ import annotations

from mailer import heap


def main() -> None:
    heap.start_quiet()
    from mailer.cli import main as cli_main  # after: its imports are the start-up

    cli_main()
