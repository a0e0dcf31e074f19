"""The shipped templates: email/ (the renderer's) and web/ (the reader pages and static/).

This folder stays at the top of the repository and is installed as the package
``mailer._templates`` (setup.py maps it), so a wheel carries it and an editable install
finds it in the checkout. Read it through :mod:`mailer.templates`, never by path.
"""
