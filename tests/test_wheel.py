"""The wheel works on its own (issue #12): built from the working tree, installed
non-editable into a fresh venv, and run from a scratch folder outside the checkout.

The fresh venv installs no dependencies of its own: a ``.pth`` file points it at the dev
venv's site-packages. That file is written after pip installed the wheel, so pip never sees
the dev venv's record of this project. The checkout is not importable there: commands run
from a scratch folder with no PYTHONPATH, through the venv's own ``mailer`` script, and a
test checks that ``mailer`` and its templates come from the new venv's site-packages.
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mailer.issue.files import parse_issue_file
from tests.plugins.mailer_server import free_port

REPO = Path(__file__).resolve().parents[1]
ISSUE = REPO / "tests" / "fixtures" / "issues" / "brief-basic.txt"
BUILD_TIMEOUT = 300
RUN_TIMEOUT = 120
SERVE_START_TIMEOUT = 60


@dataclass(frozen=True)
class Built:
    wheel: Path
    log: str  # what pip and the build backend printed


@dataclass(frozen=True)
class Venv:
    root: Path
    site_packages: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def mailer(self) -> Path:
        return self.root / "bin" / "mailer"

    def env(self, **extra: str) -> dict[str, str]:
        """The caller's environment without its Python and MAILER_* settings."""
        dropped = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV"}
        env = {
            k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("MAILER_")
        }
        env.update(
            PATH=f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(self.root),
            MAILER_ENV="test",
            MAILER_SECRET_KEY="wheel-test-key-0123456789abcdefghijklmnopqrstuvwxyz",
        )
        env.update(extra)
        return env

    def run(self, *args: str | Path, cwd: Path, env: dict[str, str]) -> str:
        """Run a command; its output, or a failure showing that output."""
        proc = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout


def _source_files() -> list[str]:
    """Tracked and new files of the checkout (a clean checkout's view of the working tree)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout, cannot list the source files: {err}")
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The wheel, built by pip like a user would (isolated build, setuptools from the index)."""
    src = tmp_path_factory.mktemp("src")
    for name in _source_files():  # a copy: no build/ or egg-info in the shared checkout
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    wheels = sorted(dist.glob("brief_mailer-*.whl"))
    assert len(wheels) == 1, log
    return Built(wheels[0], log)


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with the wheel installed (not editable) and the dev venv's dependencies."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    python = root / "bin" / "python"
    install = ["install", "--quiet", "--no-deps", "--no-index", str(built.wheel)]
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), *install],
        check=True,
        timeout=BUILD_TIMEOUT,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_dev_venv_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    return Venv(root, Path(site))


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A working folder outside the checkout, with the issue file copied in."""
    assert not tmp_path.is_relative_to(REPO)
    shutil.copy(ISSUE, tmp_path / ISSUE.name)
    return tmp_path


# -- what the wheel holds ----------------------------------------------------------------


def test_the_wheel_ships_templates_and_migrations_and_no_tests(built: Built) -> None:
    names = set(zipfile.ZipFile(built.wheel).namelist())
    shipped = {n for n in names if not n.startswith("brief_mailer-")}
    assert not [n for n in shipped if n.startswith("tests/")]
    assert not [n for n in shipped if "ses_server" in n or n.startswith("mailer/testing/")]
    assert not [n for n in shipped if "__pycache__" in n or n.endswith(".pyc")]
    assert {n.split("/")[0] for n in shipped} == {"mailer", "subscribers"}

    templates = REPO / "templates"
    expected = {
        "mailer/_templates/" + p.relative_to(templates).as_posix()
        for p in templates.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "mailer/_templates/email/issue.mjml.j2" in expected
    assert "mailer/_templates/web/static/site.css" in expected
    assert expected - names == set()

    migrations = REPO / "subscribers" / "migrations"
    versions = {
        "subscribers/migrations/versions/" + p.name for p in (migrations / "versions").glob("*.py")
    }
    assert len(versions) >= 2
    required = {"subscribers/migrations/env.py", "subscribers/migrations/script.py.mako"}
    assert (required | versions) - names == set()

    # the gettext catalogs (compiled in memory from the .po: mailer.render.i18n)
    locale = REPO / "mailer" / "render" / "locale"
    catalogs = {
        "mailer/render/locale/" + p.relative_to(locale).as_posix() for p in locale.rglob("*.po")
    }
    assert "mailer/render/locale/zh_Hans/LC_MESSAGES/messages.po" in catalogs
    assert catalogs - names == set()


def test_the_build_prints_no_license_deprecation(built: Built) -> None:
    assert "project.license" not in built.log
    assert "License classifiers" not in built.log


# -- the installed program ---------------------------------------------------------------


def test_the_fresh_venv_imports_the_wheel_not_the_checkout(venv: Venv, scratch: Path) -> None:
    code = (
        "import sys, mailer, subscribers\n"
        "from mailer.templates import shipped_folder\n"
        "print(mailer.__file__); print(subscribers.__file__); print(shipped_folder('email'))\n"
        "print('\\n'.join(p for p in sys.path if p))\n"
    )
    lines = venv.run(venv.python, "-c", code, cwd=scratch, env=venv.env()).splitlines()
    mailer_file, subscribers_file, email_folder, *path = (Path(line) for line in lines)
    for found in (mailer_file, subscribers_file, email_folder):
        assert found.is_relative_to(venv.site_packages), found
    assert (email_folder / "issue.mjml.j2").is_file()
    inside_checkout = [p for p in path if p.resolve().is_relative_to(REPO)]
    # the dev venv's site-packages (dependencies only) may live in the checkout: nothing else
    assert all(p.resolve().is_relative_to(REPO / ".venv") for p in inside_checkout), path


def test_init_render_and_serve_from_a_scratch_folder(venv: Venv, scratch: Path) -> None:
    port = free_port()
    env = venv.env(MAILER_BASE_URL=f"http://127.0.0.1:{port}")
    venv.run(venv.mailer, "init", cwd=scratch, env=env)
    assert (scratch / "brief-mailer.db").is_file()

    venv.run(venv.mailer, "issue", "render", ISSUE.name, "--out", "x", cwd=scratch, env=env)
    headline = parse_issue_file(ISSUE).items[0].title
    page = (scratch / "x" / "email.html").read_text(encoding="utf-8")
    text = (scratch / "x" / "email.txt").read_text(encoding="utf-8")
    assert html.escape(headline) in page
    assert headline in text

    sender = "The China Brief <brief@example.org>"
    create = ["lists", "create", "china-brief", "--name", "The China Brief", "--from", sender]
    venv.run(venv.mailer, *create, cwd=scratch, env=env)
    with _serving(venv, scratch, env, port) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
        subscribe = httpx.get(f"{base}/subscribe/china-brief")
        assert subscribe.status_code == 200
        assert "The China Brief" in subscribe.text
        assert 'name="csrf_token"' in subscribe.text
        css = httpx.get(f"{base}/static/site.css")
        assert css.status_code == 200
        assert css.text == (REPO / "templates" / "web" / "static" / "site.css").read_text()


def test_template_dir_overrides_the_installed_templates(venv: Venv, scratch: Path) -> None:
    overrides = scratch / "custom"
    (overrides / "email").mkdir(parents=True)
    (overrides / "web").mkdir()
    (overrides / "email" / "issue.txt.j2").write_text(
        "Our own text edition of {{ newsletter_name }}\n"
        "{% for item in items %}* {{ item.title }}\n{% endfor %}"
        "Unsubscribe: {{ ph.unsubscribe_url }}\n"
    )
    (overrides / "web" / "lists.html").write_text(
        '{% extends "base.html" %}{% block main %}<h1>Our own archive page</h1>{% endblock %}'
    )
    port = free_port()
    env = venv.env(MAILER_BASE_URL=f"http://127.0.0.1:{port}", MAILER_TEMPLATE_DIR=str(overrides))
    venv.run(venv.mailer, "init", cwd=scratch, env=env)

    venv.run(venv.mailer, "issue", "render", ISSUE.name, "--out", "x", cwd=scratch, env=env)
    headline = parse_issue_file(ISSUE).items[0].title
    text = (scratch / "x" / "email.txt").read_text(encoding="utf-8")
    assert text.startswith("Our own text edition of ")
    assert f"* {headline}\n" in text
    page = (scratch / "x" / "email.html").read_text(encoding="utf-8")
    assert html.escape(headline) in page  # the HTML template was not overridden: shipped

    with _serving(venv, scratch, env, port) as base:
        archive = httpx.get(f"{base}/archive")
        assert archive.status_code == 200
        assert "<h1>Our own archive page</h1>" in archive.text
        assert httpx.get(f"{base}/static/site.css").status_code == 200  # shipped


@contextlib.contextmanager
def _serving(venv: Venv, cwd: Path, env: dict[str, str], port: int) -> Iterator[str]:
    """``mailer serve`` of the venv on 127.0.0.1:port; yields its base URL once healthy."""
    base = f"http://127.0.0.1:{port}"
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(venv.mailer), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(proc, log, base)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _wait_healthy(proc: subprocess.Popen[bytes], log: Path, base: str) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mailer serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"mailer serve did not answer /healthz:\n{log.read_text()}")
