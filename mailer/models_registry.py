"""Imports every module that defines tables on ``subscribers.models.Base``.

Alembic, ``create_all`` in tests and the schema-comparison test go through here, so a new
table module is added in exactly one place."""

from __future__ import annotations

import mailer.feedback.models
import mailer.sending.models
import subscribers.models

MODULES = (subscribers.models, mailer.sending.models, mailer.feedback.models)
