"""Test peers shipped with the package (tests and ``scripts/bench_send.py`` both use them).

* :mod:`mailer.testing.ses_server`: an SES-v2-compatible HTTP server with fault switches,
  in process (:class:`~mailer.testing.ses_server.SesServer`) or as a child process
  (:class:`~mailer.testing.ses_server.SesServerProcess`, ``python -m
  mailer.testing.ses_server``).

Nothing here is imported by the sending code.
"""
