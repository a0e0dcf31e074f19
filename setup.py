"""What pyproject.toml cannot say: templates/ ships inside the wheel as ``mailer._templates``.

The design fixes ``templates/`` at the top of the repository, but an installed program has
to find its templates next to its code. ``package_dir`` maps the folder to a package, which
works for a wheel and for ``pip install -e .`` (setuptools' editable finder follows the
mapping). pyproject's ``packages.find`` cannot list a mapped package, and its package-data
table would replace the one given here, so packages and package data both live in this file;
metadata and dependencies are in pyproject.toml.
"""

from setuptools import find_namespace_packages, find_packages, setup

CODE = find_packages(include=["mailer", "mailer.*", "subscribers", "subscribers.*"])
# email/, web/, web/static/ are packages too: setuptools then ships their files as data
# without warning that they look like importable namespace packages.
TEMPLATE_FOLDERS = find_namespace_packages("templates", exclude=["__pycache__", "*.__pycache__"])
TEMPLATES = ["mailer._templates", *(f"mailer._templates.{name}" for name in TEMPLATE_FOLDERS)]
MIGRATIONS = ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"]
# gettext catalogs: the .po sources, compiled in memory on first use (mailer.render.i18n)
LOCALES = ["locale/*/LC_MESSAGES/*.po"]

setup(
    packages=[*CODE, *TEMPLATES],
    package_dir={"mailer._templates": "templates"},
    package_data={
        "subscribers": MIGRATIONS,
        "mailer.render": LOCALES,
        **{name: ["*"] for name in TEMPLATES},
    },
)
