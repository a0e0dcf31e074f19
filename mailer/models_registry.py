"""Every table of the project on one ``MetaData``: the store's, the campaigns' and the
feedback loop's.

The table modules live in their own layers (``subscribers.models``, ``mailer.sending.models``,
``mailer.feedback.models``); importing them puts their tables on ``subscribers.models.Base``.
Alembic's environment (autogenerate must see every table, or it proposes to drop the ones it
misses), ``create_all`` in tests and the schema-comparison test go through here, so a new
table module is added in exactly one place.
"""

from __future__ import annotations

import mailer.access.models  # its tables join Base.metadata
import mailer.feedback.models  # its tables join Base.metadata
import mailer.feedback.tracking.models  # its tables join Base.metadata
import mailer.sending.models  # noqa: F401  (its tables join Base.metadata)
import subscribers.outbox  # the webhook tables join Base.metadata
import subscribers.tracking  # noqa: F401  (list tracking setting and opt-outs)
from subscribers.models import Base

__all__ = ["metadata"]

metadata = Base.metadata
