"""What `mailer` exits with, so cron and systemd can tell a finished send from one that
needs a person: README.md "Exit codes" lists the same numbers.

A send that ends paused (the account refused, the quota ran out, the reputation guard) used
to exit 0 like a finished one, and nobody was alerted; every command that runs a campaign
(`send`, `worker --once`, `campaigns resume|retry-failed`) now exits with how it ended.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the type: importing the send path costs `campaigns show` ~90 ms
    from mailer.sending.publish import Outcome


class ExitCode(enum.IntEnum):
    OK = 0  # done: every reader sent or skipped (or scheduled, dry run, nothing due)
    ERROR = 1  # the command failed (one line on stderr), or rows failed (retry-failed)
    USAGE = 2  # a bad option or argument, or a bad MAILER_* setting
    PAUSED = 3  # the campaign paused: see `campaigns show`, then `campaigns resume`
    EXPIRED = 4  # too late: its unsent readers were skipped
    CANCELLED = 5  # cancelled while it was being sent
    STOPPED = 6  # asked to stop (SIGTERM) with readers still queued
    INTERRUPTED = 130  # Ctrl-C


#: keyed by the values of mailer.sending.publish.Ending (a StrEnum: a member is its value);
#: tests/test_cli_startup.py checks every Ending has its code
OF_ENDING: dict[str, ExitCode] = {
    "done": ExitCode.OK,
    "failed": ExitCode.ERROR,
    "paused": ExitCode.PAUSED,
    "expired": ExitCode.EXPIRED,
    "cancelled": ExitCode.CANCELLED,
    "stopped": ExitCode.STOPPED,
    "waiting": ExitCode.OK,  # --at-local between waves: `mailer worker` sends the next one
}

#: when a worker ran several campaigns, the code of the one that most needs a person
URGENCY = (
    ExitCode.PAUSED,
    ExitCode.ERROR,
    ExitCode.EXPIRED,
    ExitCode.STOPPED,
    ExitCode.CANCELLED,
    ExitCode.OK,
)


def of_outcome(outcome: Outcome) -> ExitCode:
    return OF_ENDING[outcome.ending]


def of_outcomes(outcomes: Iterable[Outcome]) -> ExitCode:
    """The most urgent code among the outcomes (OK when there were none)."""
    codes = {of_outcome(o) for o in outcomes}
    return next((code for code in URGENCY if code in codes), ExitCode.OK)
