"""The web side of brief-mailer: reader pages (subscribe, confirm, unsubscribe,
preferences, archive, feed) and the app factory the webhook, admin and metrics routers
plug into. Start with :func:`mailer.web.app.create_app`; public URLs are in
:mod:`mailer.urls`."""
