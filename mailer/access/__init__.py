"""Who calls the HTTP API and what it handed over: API tokens and roles, the issues the
upstream pipeline posted (stored by key), and the first answers of idempotent requests.

Layer: above the store (``subscribers``), below every entrance; it imports only the store,
settings and errors, so the CLI (``mailer tokens``), the API (``/api/v1``) and the web desk
share one copy of "who is this token".
"""
