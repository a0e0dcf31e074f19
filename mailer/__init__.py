"""brief-mailer: deliver a newsletter issue to its list, well.

Public entry points live in the submodules (``mailer.config``, ``mailer.issue.model``,
``mailer.render.compiler``, ``mailer.sending.engine`` ...); nothing is built at import time.
"""

__version__ = "0.1.0"
