"""Issue -> email, once per campaign: HTML and text bodies, the MIME template, link tokens.

``compiler`` turns an Issue into bodies (Jinja2 -> MJML -> HTML -> inlined CSS, and text)
with per-reader placeholders; ``message`` builds the MIME template spliced per reader;
``tokens`` signs the links a reader clicks.
"""
