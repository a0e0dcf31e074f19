"""Click and open tracking (issue 16): events, their classification, the intake writer.

``models`` holds the ``tracking_events`` table; ``classify`` decides human, machine or proxy
(with the reason) from what a request looked like and when it came; ``intake`` writes hits
in batches behind the redirect and reads SES's own open/click events into the same rows.
The links themselves are rewritten and signed by :mod:`mailer.render.tracking`; the list
setting and the reader's opt-out live in the store (:mod:`subscribers.tracking`).
"""
