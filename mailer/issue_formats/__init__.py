"""Issue file formats; each module parses one format into a :class:`mailer.issue.Issue`.

``brief``: the upstream plain-text brief. ``markdown``: Markdown with YAML front matter.
``common``: the rules both share (lines, whitespace, URLs, date, subject).
"""
