"""The cyclic garbage collector around a command's start-up (issue 17: start-up, the send).

Start-up makes hundreds of thousands of objects that live as long as the process (modules,
SQLAlchemy's and botocore's tables, the rendered issue); none of them is garbage, yet every
full collection walks all of them, and the more there are the more often one runs. Measured
on a 20,000-reader bulk `mailer send`: 3.0 s with the collector as it is, 2.4 s this way
(0.6 s of collections that freed nothing); `import sqlalchemy.orm, typer, rich` 0.38 s
against 0.33 s.

So the console script starts with the collector off (:func:`start_quiet`); once the command's
module is imported the CLI moves everything alive into the permanent generation
(``gc.freeze``, which no collection walks) and turns it on again, collecting young objects in
larger steps (:func:`started`); a one-shot
command freezes once more before its long part (:func:`before_long_run`: the render and the
transport). What start-up left as garbage stays, once, never per run. In any other process
(tests calling the CLI in process, the web app under its own server) all three do nothing.
"""

from __future__ import annotations

import gc

_quiet = False  # set by the console script only


def start_quiet() -> None:
    """The console script's first step: no collections while the command starts."""
    global _quiet
    _quiet = True
    gc.disable()


#: allocations between two young collections in a command (CPython's default: 700). A send
#: makes ~470 container objects per reader, most of them dead within its batch: at 700, a
#: 20,000-reader send ran ~700 young collections, which walked each batch's live rows again
#: and again (0.19 s of collector time; 0.06 s at 50,000, a few MB of garbage at most)
YOUNG_THRESHOLD = 50_000


def started() -> None:
    """Start-up is over: freeze what it made, collect from now on (the first call acts),
    young objects in larger steps (:data:`YOUNG_THRESHOLD`)."""
    if _quiet and not gc.isenabled():
        gc.freeze()
        _, middle, old = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
        gc.enable()


def before_long_run() -> None:
    """A one-shot command about to send or import: freeze what it built meanwhile, so the
    collections of its long part walk only what that part makes. Once per process: a
    long-lived process that froze each run would keep each run's garbage."""
    global _quiet
    if _quiet:
        _quiet = False
        gc.freeze()
        gc.enable()
