"""Start-up: `mailer --help` and the light commands import only what they use.

Timing goals live in scripts/bench.py (the `startup` row); here, deterministic checks of what
a command imports, in a fresh interpreter each time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import typer
from typer._click.exceptions import BadParameter
from typer._coercion import RuntimeParam, build_runtime_param

from mailer.cli import COMMANDS, command, iter_commands
from mailer.cli.exit_codes import OF_ENDING, of_outcome
from mailer.cli.light_params import LightParam
from mailer.sending.publish import Ending, Outcome
from tests.conftest import Database
from tests.delivery_helpers import make_campaign, seed_list

HEAVY = ("sqlalchemy", "boto3", "botocore", "fastapi", "alembic", "uvicorn")
# the send path: what `send`, `worker` and `campaigns resume` need, never `campaigns show`
SEND_PATH = ("mailer.sending.publish", "mailer.sending.engine", "mailer.cli.running")
# imported only by the commands that use them (issue 17, -X importtime on `lists show`):
# pydantic (typer's coercion, mailer.cli.light_params), email_validator (an address to
# check), the renderer (jinja2, babel) and the transports (email's generator, smtplib)
DEFERRED = ("pydantic", "email_validator", "jinja2", "babel", "mailer.render", "mailer.transports")
# PostgreSQL's dialect on a SQLite store (subscribers.pg_options), and the campaign write side
# (enqueue, lifecycle events) for a read (mailer.sending.report)
UNUSED = ("sqlalchemy.dialects.postgresql", "mailer.sending.campaign_events")

# Runs `mailer ARGS...` through the real entry point, then prints which heavy packages and
# which command modules that one run imported.
PROBE = f"""
import json, sys
HEAVY = {HEAVY!r}
SEND_PATH = {SEND_PATH!r}
DEFERRED = {DEFERRED!r}
UNUSED = {UNUSED!r}
from mailer.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in HEAVY if m in sys.modules)
cmds = sorted(m for m in sys.modules if m.startswith("mailer.cli.") and m.endswith("_cmds"))
send = sorted(m for m in SEND_PATH if m in sys.modules)
deferred = sorted(m for m in DEFERRED if m in sys.modules)
unused = sorted(m for m in UNUSED if m in sys.modules)
print("PROBE " + json.dumps(dict(heavy=heavy, cmds=cmds, send=send, deferred=deferred,
                                 unused=unused)))
print("EXIT " + json.dumps(code))
"""


def probe(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    line = [x for x in run.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, f"no probe output: {run.stdout!r} {run.stderr!r}"
    result: dict[str, Any] = json.loads(line[-1][len("PROBE ") :])
    result["exit"] = json.loads(run.stdout.splitlines()[-1][len("EXIT ") :])
    return result


def test_help_imports_no_heavy_package_and_no_command_module() -> None:
    seen = probe("--help")
    assert seen == {
        "heavy": [],
        "cmds": [],
        "send": [],
        "deferred": [],
        "unused": [],
        "exit": 0,
    }


def test_import_alone_imports_nothing_heavy() -> None:
    code = f"import sys, mailer.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["context", "safe_text", "exit_codes", "campaign_report"])
def test_shared_cli_modules_import_no_send_path(module: str) -> None:
    """What mailer/cli/__init__.py promises of the modules light commands share (exit_codes
    used to import mailer.sending.publish, and with it the engine and the renderer)."""
    names = (*HEAVY[1:], *SEND_PATH)  # campaign_report reads the store: SQLAlchemy is fine
    code = f"import sys, mailer.cli.{module}; print([m for m in {names!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_group_help_imports_only_its_own_module() -> None:
    seen = probe("lists", "--help")
    assert seen["cmds"] == ["mailer.cli.lists_cmds"]
    assert "boto3" not in seen["heavy"] and "fastapi" not in seen["heavy"]


def test_light_commands_import_no_aws_web_or_migrations(db: Database) -> None:
    seed_list(db.sessions, 3)
    campaign_id, _, _ = make_campaign(db.sessions, db.settings())
    for args in (("lists", "show"), ("lists", "show", "brief"), ("campaigns", "show", "1")):
        seen = probe(*args, env=db.env())
        assert seen["exit"] == 0, (args, seen)  # the command did its work, not an error
        assert set(seen["heavy"]) <= {"sqlalchemy"}, (args, seen)
        assert len(seen["cmds"]) == 1, (args, seen)
        assert seen["send"] == [], (args, seen)
        assert seen["deferred"] == [], (args, seen)
        if db.backend == "sqlite":
            assert seen["unused"] == [], (args, seen)
        else:  # PostgreSQL's dialect is the store's own there
            assert seen["unused"] == ["sqlalchemy.dialects.postgresql"], (args, seen)
    assert campaign_id == 1


def test_a_sending_command_does_load_the_send_path(db: Database) -> None:
    """The guard above can fail: `campaigns pause` imports the send path when it runs."""
    seen = probe("campaigns", "pause", "1", env=db.env())
    assert "mailer.sending.publish" in seen["send"], seen


def test_every_ending_has_its_exit_code() -> None:
    """exit_codes maps Ending by value (importing publish would slow `campaigns show`)."""
    assert set(OF_ENDING) == {e.value for e in Ending}
    for ending in Ending:
        assert of_outcome(cast(Outcome, SimpleNamespace(ending=ending))) == OF_ENDING[ending]


def test_every_entry_says_what_its_command_says() -> None:
    """`mailer --help` shows the registry's line without importing: it must be the
    command's own first line, or the listing lies."""
    root = command()
    ctx = typer.Context(root)
    for name, entry in COMMANDS.items():
        cmd = root.get_command(ctx, name)
        assert cmd is not None, name
        assert cmd.get_short_help_str(10_000) == entry.help, name


def test_unknown_command_suggests_from_unloaded_ones() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mailer", "campaings"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert "No such command 'campaings'" in run.stderr and "'campaigns'" in run.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_group_loads_under_its_name(name: str) -> None:
    root = command()
    cmd = root.get_command(typer.Context(root), name)
    assert cmd is not None and cmd.name == name


# what a command line, an environment variable or a default can hand a parameter
VALUES: tuple[object, ...] = (
    *("0", "7", "-3", "20", "10000", "10001", "012", "+5", " 7", "1_000", "12.0", "1e3"),
    *("\u0661\u0662", "-", "", "abc", "9" * 19, "x.csv", "bounce", "TRUE", "no"),
    *(0, 7, -3, 20, 65536, 1.5, True, False),
)


def _outcome(runtime: RuntimeParam, param: Any, ctx: typer.Context, value: object) -> object:
    try:
        return ("value", runtime.coerce(value, param=param, ctx=ctx))
    except BadParameter as err:
        return ("error", err.format_message())


def test_light_coercion_gives_what_typers_own_gives() -> None:
    """mailer.cli.light_params takes the plainly valid values itself and hands the rest to
    typer's pydantic coercion: for every parameter of every command, each value comes out
    the same (or is refused with the same message)."""
    root = command()
    ctx = typer.Context(root)
    checked = 0
    for _, leaf in iter_commands(root):
        for param in leaf.params:
            desc = param.type_descriptor
            if desc.file_annotation is not None or param.multiple or param.nargs != 1:
                continue  # files and lists: never taken by LightParam, whole or in part
            for value in VALUES:
                light = LightParam(desc.parameter_info, desc.annotation)
                want = _outcome(build_runtime_param(desc), param, ctx, value)
                assert _outcome(light, param, ctx, value) == want, (leaf.name, param.name, value)
                checked += 1
    assert checked > 1000


def test_a_bad_number_is_refused_as_before() -> None:
    """A value LightParam does not take goes to typer's coercion: the same one-line refusal."""
    run = subprocess.run(
        [sys.executable, "-m", "mailer", "campaigns", "list", "--limit", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "'--limit': Input should be greater than or equal to 1" in run.stderr


def test_a_file_argument_loads_no_pydantic() -> None:
    """A Path given as a plain str is taken by LightParam (mailer send FILE, issue check
    FILE): typer's pydantic coercion is not imported for it."""
    issue = Path(__file__).parent / "fixtures" / "issues" / "brief-basic.txt"
    seen = probe("issue", "check", str(issue))
    assert seen["exit"] == 0, seen
    assert "pydantic" not in seen["deferred"], seen
