"""The subscriber store: who receives mail and what they agreed to.

``subscribers.db`` builds engines and sessions, ``subscribers.models`` holds the tables,
``subscribers.store`` the operations (subscribe, confirm, unsubscribe, import, export, erase,
suppress). Alembic migrations live in ``subscribers/migrations``.
"""
