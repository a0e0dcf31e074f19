"""Outgoing webhooks: endpoints, Standard Webhooks signing, delivery with retries.

The events are written by :func:`subscribers.outbox.emit` in the transaction of the change;
this package signs them (:mod:`.signing`), posts them (:mod:`.http`) and keeps the delivery
log (:mod:`.dispatch`), run by ``mailer worker``.
"""
