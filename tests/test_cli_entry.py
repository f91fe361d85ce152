"""The `llmledger` command as a user runs it: the installed script, in a subprocess, at 80 and 120 columns.

Markup in data and input, table widths, read-only commands on a missing ledger, bad ledger URLs,
`--version`, completion, help texts, filters, durations, validation, prices, limits, doctor.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llmledger
from llmledger.cli import app
from llmledger.cli.render import money

SCRIPT = Path(sys.executable).with_name("llmledger")
WIDTHS = (80, 120)


def run(
    *args: str, columns: int = 80, stdin: str = "", cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """The installed `llmledger` script (or `python -m llmledger.cli`), with COLUMNS set."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "llmledger.cli"]
    environment = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "NO_COLOR": "1", **env}
    environment.pop("LLMLEDGER_DB", None)
    return subprocess.run(
        command + list(args),
        capture_output=True,
        text=True,
        env=environment,
        input=stdin,
        timeout=120,
        cwd=cwd,
    )


class Result:
    """What an in-process run printed (stdout and stderr apart) and its exit status."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(*args: str) -> Result:
    """The same app in this process (80 columns): fast, for what does not depend on the terminal."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "filled.db"
    llmledger.init(ledger=str(path))
    now = datetime.now(timezone.utc)
    rows = [
        ("acme [beta]", "u1", "claude-sonnet-4-5-20250929", "anthropic", 123_456, 7_890, None),
        ("team[/x]", "u2", "gpt-4o-2024-08-06", "openai", 1_000_000, 250_000, "agent-7"),
        ("[bold]globex[/bold]", "u3", "gpt-4o-mini", "openai", 1, 0, None),  # $0.00000015
    ]
    for tenant, user, model, provider, inp, out, agent in rows:
        llmledger.track(
            provider=provider,
            model=model,
            input_tokens=inp,
            output_tokens=out,
            tenant=tenant,
            user=user,
            agent=agent,
            tags={"plan": "free" if agent else "pro"},
            timestamp=now - timedelta(days=40 if tenant.startswith("acme") else 0),
        )
    llmledger.track(provider="openai", model="ft:gpt-4o-mini:acme::x", input_tokens=5, tenant="acme [beta]")
    llmledger.shutdown()
    return path


@pytest.mark.parametrize("columns", WIDTHS)
def test_report_shows_data_verbatim_and_never_cuts_costs_counts_or_models(filled: Path, columns: int) -> None:
    as_json = run("report", "--ledger", str(filled), "--by", "tenant,model", "--since", "1y", "-f", "json")
    rows = json.loads(as_json.stdout)
    table = run("report", "--ledger", str(filled), "--by", "tenant,model", "--since", "1y", columns=columns)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "…" not in table.stdout and "E-" not in table.stdout
    for row in rows:
        assert row["model"] in table.stdout  # models whole, on one line
        assert money(Decimal(row["cost_usd"])) in table.stdout
        assert f"{row['requests']:,}" in table.stdout
        # labels may fold onto more lines when space is short, never vanish or turn into markup
        assert row["tenant"] in table.stdout or all(w[:8] in table.stdout for w in row["tenant"].split())
    assert "$0.00000015" in table.stdout  # not $1.5E-7, not $0.000000
    # a token column is shown whole, or left out with a note saying so (never cut)
    note = " ".join(table.stdout.split())
    assert "1,000,000" in table.stdout or ("input tok" in note and "not shown at this width" in note)
    assert columns == 80 or "1,000,000" in table.stdout
    by_tenant = run("report", "--ledger", str(filled), "--by", "tenant", "--since", "1y", columns=columns)
    for tenant in ("acme [beta]", "team[/x]", "[bold]globex[/bold]"):
        assert tenant in by_tenant.stdout


@pytest.mark.parametrize("columns", WIDTHS)
def test_events_show_data_verbatim_at_every_width(filled: Path, columns: int) -> None:
    result = run("events", "--ledger", str(filled), "--since", "1y", columns=columns)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    for model in ("claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06", "ft:gpt-4o-mini:acme::x"):
        assert model in result.stdout
    assert "$5.00" in result.stdout and "1,000,000" in result.stdout and "…" not in result.stdout
    for tenant in ("acme [beta]", "team[/x]", "[bold]globex[/bold]"):
        assert tenant in result.stdout or all(w[:8] in result.stdout for w in tenant.split())


def test_user_input_is_never_read_as_markup(filled: Path) -> None:
    result = run("report", "--ledger", str(filled), "--by", "[/x]")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot group by '[/x]'" in result.stderr
    tagged = run("report", "--ledger", str(filled), "--by", "tag:[/x]", "--since", "1y")
    assert tagged.returncode == 0 and "tag:[/x]" in tagged.stdout, tagged.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["report"],
        ["events"],
        ["reconcile"],
        ["limits", "list"],
        ["limits", "rm", "lim_x"],
        ["delete", "--tenant", "acme", "--yes"],
    ],
)
def test_read_only_commands_never_create_a_ledger(
    tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "typo" / "ledgr.db"
    result = cli(*args, "--ledger", str(missing))
    assert result.returncode == 2 and f"no ledger at {missing}" in result.stderr
    assert not missing.parent.exists()
    monkeypatch.delenv("LLMLEDGER_DB")
    monkeypatch.chdir(tmp_path)
    default = cli(*args)  # the default ./llmledger.db is not created either
    assert default.returncode == 2 and not (tmp_path / "llmledger.db").exists()


def test_a_typo_is_an_error_not_zero_spend(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "ledgr.db"
    result = run("report", "--ledger", str(missing))
    assert result.returncode == 2 and f"no ledger at {missing}" in result.stderr and result.stdout == ""
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    ("ledger", "message"),
    [
        ("garbage://", "unknown database 'garbage'"),
        ("postgresql://u@localhost/db", "needs psycopg"),
        ("{file}/sub/ledger.db", "is a file, not a folder"),
    ],
)
def test_bad_ledger_urls_are_clean_errors(
    tmp_path: Path, ledger: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the driver were not installed
    file = tmp_path / "plain.txt"
    file.write_text("x")
    url = ledger.format(file=file)
    for args in (["limits", "set", "--usd", "1", "--ledger", url], ["demo", "--ledger", url, "--calls", "1"]):
        result = cli(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(llmledger.LlmLedgerError, match=message):  # --debug: the error itself
        cli("--debug", "limits", "set", "--usd", "1", "--ledger", url)
    with pytest.raises((llmledger.ConfigError, llmledger.LedgerError)):
        llmledger.init(ledger=url)


def test_errors_print_a_traceback_only_with_debug() -> None:
    quiet = run("limits", "set", "--usd", "1", "--ledger", "garbage://")
    assert quiet.returncode == 2 and quiet.stderr.startswith("error: ") and "Traceback" not in quiet.stderr
    debug = run("--debug", "limits", "set", "--usd", "1", "--ledger", "garbage://")
    assert "Traceback" in debug.stderr and "unknown database 'garbage'" in debug.stderr


def test_version_completion_and_plain_help() -> None:
    assert run("--version").stdout.strip() == f"llmledger {llmledger.__version__}"
    # the shell is named, not detected from the parent processes (which differ between runners)
    completion = run("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert completion.returncode == 0 and "_LLMLEDGER_COMPLETE" in completion.stdout
    load = cli("limits", "load", "--help")
    assert "[[limits]]" in load.stdout and "<bool>" not in load.stdout
    limit_set = " ".join(cli("limits", "set", "--help").stdout.split())
    for words in ("throttle:", "--max-wait", "rolling:1h", "lifetime", "soft:", "hard:", "estimate:"):
        assert words in limit_set
    assert "[default: ./llmledger.db]" in " ".join(cli("report", "--help").stdout.split())


def test_filters_durations_and_date_order(filled: Path) -> None:
    def rows(*args: str) -> list[dict[str, str]]:
        result = cli("report", "--ledger", str(filled), "-f", "json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    assert [r["tenant"] for r in rows("--by", "tenant", "--agent", "agent-7")] == ["team[/x]"]
    assert [r["tenant"] for r in rows("--by", "tenant", "--tag", "plan=free")] == ["team[/x]"]
    assert rows("--by", "tenant", "--requested-model", "nope") == []
    assert {r["tenant"] for r in rows("--by", "tenant", "--provider", "anthropic", "--since", "1y")} == {
        "acme [beta]"
    }
    this_month = {(r["tenant"], r["model"]) for r in rows("--by", "tenant,model", "--since", "mtd")}
    assert ("acme [beta]", "claude-sonnet-4-5-20250929") not in this_month  # 40 days old
    assert ("acme [beta]", "ft:gpt-4o-mini:acme::x") in this_month
    days = [r["day"] for r in rows("--by", "day", "--since", "1y")]
    assert days == sorted(days) and len(days) == 2
    events = cli("events", "--ledger", str(filled), "--agent", "agent-7", "--tag", "plan=free", "-f", "json")
    assert [e["tenant"] for e in json.loads(events.stdout)] == ["team[/x]"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "--status", "bogus"], "--status must be one of cancelled, error, ok"),
        (["report", "--by", ""], "--by needs group keys"),
        (["report", "--by", "tenant,,model"], "--by needs group keys"),
        (["report", "--tag", "plan"], "--tag must be name=value"),
        (["prices", "gpt-4o", "--tier", "garbage"], "--tier must be one of"),
        (["report", "--since", "yesterday-ish"], "not a time"),
    ],
)
def test_bogus_values_are_rejected(filled: Path, args: list[str], message: str) -> None:
    result = cli(*args, "--ledger", str(filled)) if args[0] != "prices" else cli(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_prices_file_is_honoured_without_provider(tmp_path: Path) -> None:
    overrides = tmp_path / "p.toml"
    overrides.write_text('[[prices]]\nprovider="acme"\nmodel="m1"\ninput_mtok="0.0000001"\n')
    result = cli("prices", "m1", "--prices", str(overrides))
    assert result.returncode == 0, result.stderr
    assert "override" in result.stdout and "$0.0000001" in result.stdout and "E-" not in result.stdout


def test_limits_list_shows_each_subject_and_top_up(filled: Path) -> None:
    ledger = ["--ledger", str(filled)]
    each = cli("limits", "set", *ledger, "--usd", "10", "--per", "month", "--user", "*")
    fixed = cli("limits", "set", *ledger, "--usd", "5", "--per", "lifetime", "--model", "gpt-4o-2024-08-06")
    assert each.returncode == 0 and fixed.returncode == 0, each.stderr + fixed.stderr
    for columns in WIDTHS:
        listed = run("limits", "list", *ledger, columns=columns)
        assert max(len(line) for line in listed.stdout.splitlines()) <= columns
        assert "each user" in listed.stdout and "model=gpt-4" in listed.stdout
        assert "user=u2" in listed.stdout and "$5.00" in listed.stdout  # u2's spend this month, own row
        assert "$0.00000015" in listed.stdout  # u3's
    fixed_id = fixed.stdout.split()[0]
    topped = cli("limits", "top-up", fixed_id, "2.5", *ledger)
    assert topped.returncode == 0 and "2.5 granted" in topped.stdout, topped.stderr
    assert "$7.50" in cli("limits", "list", *ledger).stdout  # 5 + 2.5 allowed now
    refused = cli("limits", "top-up", each.stdout.split()[0], "1", *ledger)
    assert refused.returncode == 2 and "only lifetime limits take top-ups" in refused.stderr


def test_limits_load_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "limits.toml"
    bad.write_text(
        '[[limits]]\nusd = -5\nper = "fortnight"\nmode = "loud"\n\n[[limits]]\nusd = 1\ncustomer = "x"\n'
    )
    result = cli("limits", "load", str(bad), "--ledger", str(tmp_path / "l.db"))
    assert result.returncode == 2
    for problem in (
        "entry 1: usd must be",
        "entry 1: per='fortnight'",
        "entry 1: mode='loud'",
        "entry 2: unknown",
    ):
        assert problem in result.stderr


def test_doctor_says_what_is_wrong(filled: Path, tmp_path: Path) -> None:
    sick = cli("doctor", "--ledger", str(filled))
    assert sick.returncode == 1 and "FAIL" in sick.stdout and "ft:gpt-4o-mini:acme::x" in sick.stdout
    for fact in ("schema 0002", "4 event(s)", "SDK openai", "limit counters equal"):
        assert fact in sick.stdout or "no spend limits" in sick.stdout
    healthy = tmp_path / "ok.db"
    llmledger.init(ledger=str(healthy))
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=10)
    llmledger.set_limit(usd=5, per="day", tenant="*")
    llmledger.shutdown()
    good = cli("doctor", "--ledger", str(healthy))
    assert good.returncode == 0 and "all good" in good.stdout and "each tenant" in good.stdout, good.stdout
    missing = cli("doctor", "--ledger", str(tmp_path / "none.db"))
    assert missing.returncode == 1 and "no ledger at" in missing.stdout
    assert not (tmp_path / "none.db").exists()


def _demo_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("llmledger-demo-*"))


def test_demo_is_repeatable_refuses_real_ledgers_and_cleans_up(tmp_path: Path, filled: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    first = run("demo", "--calls", "6", columns=120, TMPDIR=str(temp))
    assert first.returncode == 0, first.stderr
    assert _demo_dirs(temp) == []  # its temporary ledger is gone
    summary = re.search(r"(\d+) requests recorded = 6 \+ 1 fine-tuned \+ (\d+) trial", first.stdout)
    assert summary is not None, first.stdout
    total, admitted = int(summary.group(1)), int(summary.group(2))
    assert total == 7 + admitted
    captions = re.findall(r"over (\d+) requests", first.stdout)
    assert captions and all(int(n) == total for n in captions)  # the header's numbers = the tables'
    own = tmp_path / "demo.db"
    runs = [cli("demo", "--ledger", str(own), "--calls", "6") for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[1].stdout + runs[1].stderr
    assert "resetting the ledger of an earlier demo run" in runs[1].stdout

    def tables(out: str) -> str:
        return out[out.index("Spend by tenant") : out.index("Events written")]

    assert tables(runs[0].stdout) == tables(runs[1].stdout)  # deterministic: the same tables every run
    refused = cli("demo", "--ledger", str(filled), "--calls", "2")
    assert refused.returncode == 2 and "the demo never writes into a real ledger" in refused.stderr
    llmledger.init(ledger=str(filled))
    assert len(llmledger.events()) == 4 and llmledger.limits() == []  # untouched


def test_delete_asks_unless_yes_and_reconcile_stays_clean(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    llmledger.init(ledger=str(path))
    llmledger.set_limit(usd=100, per="month", user="*")
    for user in ("u1", "u2", "u2"):
        llmledger.track(provider="openai", model="gpt-4o", input_tokens=1000, user=user)
    llmledger.shutdown()
    refused = CliRunner().invoke(app, ["delete", "--ledger", str(path), "--user", "u2"], input="n\n")
    assert refused.exit_code == 1 and "deleted" not in refused.stdout
    done = cli("delete", "--ledger", str(path), "--user", "u2", "--yes")
    assert done.returncode == 0 and "deleted 2 event(s)" in done.stdout, done.stderr
    assert cli("reconcile", "--ledger", str(path)).returncode == 0
    nothing = cli("delete", "--ledger", str(path))
    assert nothing.returncode == 2 and "say which events to delete" in nothing.stderr
