"""The issue: the :class:`~mailer.issue.model.Issue` model and its two file formats.

``model`` is the Issue itself; ``brief`` and ``markdown`` parse one format each, sharing
``common``; ``files`` reads a file or text and picks the format.
"""
