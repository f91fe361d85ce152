"""Regressions from the newcomer15 session (the CLI, keys and limits paper cuts), as a user runs them:
the real CLI (typer's runner) and the server's ASGI app on real SQLite files."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx2
import pytest
from starlette.testclient import TestClient
from tests.serving import wait_ready
from typer.testing import CliRunner

import llmledger
from llmledger.cli import app
from llmledger.engine import Engine
from llmledger.server import ServerSettings, create_app

runner = CliRunner()
ADMIN = "llk_00000000000000ad_" + "a" * 32


@pytest.mark.parametrize("tenant", ["x\x01", "a\tb", "a\nb", "x\x7f"])
def test_keys_refuse_a_control_character_tenant_like_limits(tmp_path: Path, tenant: str) -> None:
    """#15: the same tenant rule as limits (printable text), in the CLI and over HTTP."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    Engine(url).close()  # the server's ledger exists (keys commands refuse to create one)
    made = runner.invoke(app, ["keys", "create", "--scope", "read", "--tenant", tenant, "--ledger", url])
    assert made.exit_code != 0 and "tenant must be printable" in made.output
    limit = runner.invoke(app, ["limits", "set", "--usd", "1", "--tenant", tenant, "--ledger", url])
    assert limit.exit_code != 0 and "printable" in limit.output
    engine = Engine(url)
    try:
        server = create_app(ServerSettings(ledger=url, admin_key=ADMIN), engine=engine)
        with TestClient(server, headers={"Authorization": f"Bearer {ADMIN}"}) as api:
            answer = api.post("/api/v1/keys", json={"scope": "read", "tenant": tenant})
            assert answer.status_code == 422 and "printable" in answer.text
            assert api.post("/api/v1/keys", json={"scope": "read", "tenant": "acme"}).status_code == 201
        assert [k.tenant for k in engine.keys.list() if k.scope == "read"] == ["acme"]
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("input_tokens", -5, "input_tokens must be >= 0"),
        ("input_tokens", float("nan"), "input_tokens must be an int"),
        ("input_tokens", 1.5, "input_tokens must be an int"),
        ("input_tokens", True, "input_tokens must be an int"),
        ("input_tokens", 10**20, "input_tokens must be at most"),
        ("max_output_tokens", -1, "max_output_tokens must be >= 0"),
        ("max_output_tokens", float("nan"), "max_output_tokens must be an int"),
    ],
)
def test_check_and_guard_validate_token_counts_like_track(
    tmp_path: Path, field: str, value: object, says: str
) -> None:
    """#2: a typed InvalidUsageError naming the field, not a silent accept or a raw TypeError."""
    llmledger.init(ledger=str(tmp_path / "c.db"))
    llmledger.set_limit(usd=1, per="month", tenant="a")
    with pytest.raises(llmledger.InvalidUsageError, match=says):
        llmledger.check(model="gpt-4o-mini", tenant="a", **{field: value})  # type: ignore[arg-type]
    guard = llmledger.guard(model="gpt-4o-mini", tenant="a", **{field: value})  # type: ignore[arg-type]
    with pytest.raises(llmledger.InvalidUsageError, match=says), guard:
        pass
    assert llmledger.check(model="gpt-4o-mini", tenant="a", input_tokens=5, max_output_tokens=10)


ROOT = Path(__file__).parent.parent
MAIN = "import sys; from llmledger.cli import main; sys.argv[0] = 'llmledger'; main()"


def _cli(*args: str, cwd: Path, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", MAIN, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def _redeems(link: str) -> bool:
    answer = httpx2.get(link, follow_redirects=False, timeout=5)
    return answer.status_code == 303 and answer.headers["location"] == "/" and "set-cookie" in answer.headers


def test_serve_on_a_port_in_use_prints_no_url_and_no_login_link(tmp_path: Path) -> None:
    """#16: bind first; the URL and the one-time link are printed only once listening."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = _cli("serve", "--ledger", f"sqlite:///{tmp_path / 's.db'}", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "cannot listen on 127.0.0.1:" in done.stderr and "pick another --port" in done.stderr
    assert "serving on" not in done.stderr and "login" not in done.stderr
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        gateway = _cli(
            "proxy", "--ledger", f"sqlite:///{tmp_path / 's.db'}", "--port", str(port), cwd=tmp_path
        )
    assert gateway.returncode == 2 and "cannot listen on 127.0.0.1:" in gateway.stderr
    assert "gateway on" not in gateway.stderr
    bad_host = _cli(
        "serve", "--ledger", f"sqlite:///{tmp_path / 's.db'}", "--host", "999.1.1.1", cwd=tmp_path
    )
    assert bad_host.returncode == 2 and "cannot listen on 999.1.1.1" in bad_host.stderr
    assert "serving on" not in bad_host.stderr


def _read_until(stream: IO[str], want: str, deadline: float) -> str:
    lines: list[str] = []
    while time.monotonic() < deadline and not any(want in line for line in lines):
        line = stream.readline()
        assert line, f"the process ended: {''.join(lines)}"
        lines.append(line)
    return "".join(lines)


def _popen(*args: str, cwd: Path, stdout: bool) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT / "src"), "TMPDIR": str(cwd)}
    return subprocess.Popen(
        [sys.executable, "-c", MAIN, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stdout else subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_serve_on_port_0_prints_the_real_port_and_a_working_login_link(tmp_path: Path) -> None:
    """#16: the printed URL is the bound one (port 0 → the real port) and the server is up."""
    proc = _popen(
        "serve", "--ledger", f"sqlite:///{tmp_path / 's.db'}", "--port", "0", cwd=tmp_path, stdout=False
    )
    try:
        assert proc.stderr is not None
        text = _read_until(proc.stderr, "login link", time.monotonic() + 60)
        url = re.search(r"serving on (http://127\.0\.0\.1:(\d+))", text)
        link = re.search(r"login link\): (\S+)", text)
        assert url and link and url.group(2) != "0", text
        assert link.group(1).startswith(url.group(1) + "/login?token=")
        wait_ready(url.group(1), timeout=60, proc=proc)
        assert _redeems(link.group(1))
    finally:
        _stop(proc)


def test_demo_serve_prints_a_one_time_dashboard_login_link(tmp_path: Path) -> None:
    """#22: like `llmledger serve`, the demo's server prints a dashboard login link."""
    proc = _popen("demo", "--serve", "--port", "0", "--calls", "3", cwd=tmp_path, stdout=True)
    try:
        assert proc.stdout is not None
        text = _read_until(proc.stdout, "Admin key:", time.monotonic() + 120)
        url = re.search(r"Serving the demo ledger at (http://127\.0\.0\.1:\d+)", text)
        link = re.search(r"Dashboard \(one-time login link\): (\S+)", text)
        assert url and link, text
        assert link.group(1).startswith(url.group(1) + "/login?token=")
        wait_ready(url.group(1), timeout=60, proc=proc)
        assert _redeems(link.group(1))
        assert not _redeems(link.group(1))  # one time
    finally:
        _stop(proc)


def _limits_ledger(tmp_path: Path) -> str:
    path = str(tmp_path / "lim.db")
    llmledger.init(ledger=path)
    llmledger.set_limit(usd="1.5", per="month", tenant="*")
    llmledger.set_limit(requests=10, per="day", tenant="acme")
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1000, tenant="acme")
    llmledger.shutdown()
    return path


def test_limits_list_has_csv_and_json_formats(tmp_path: Path) -> None:
    """#12: the narrow-table hint says `--format csv`: it exists, exact amounts, like report/events."""
    path = _limits_ledger(tmp_path)
    narrow = runner.invoke(app, ["limits", "list", "--ledger", path], env={"COLUMNS": "60"})
    assert narrow.exit_code == 0, narrow.output
    as_csv = runner.invoke(app, ["limits", "list", "--ledger", path, "--format", "csv"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    usd = next(r for r in rows if r["metric"] == "usd")
    assert (usd["subject"], usd["limit"], usd["spent"]) == ("tenant=acme", "1.5", "0.00015")
    assert Decimal(usd["left"]) == Decimal("1.5") - Decimal("0.00015")
    as_json = runner.invoke(app, ["limits", "list", "--ledger", path, "-f", "json"])
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.output)
    requests = next(r for r in records if r["metric"] == "requests")
    assert (requests["limit"], requests["spent"], requests["left"]) == ("10", "1", "9")
    assert requests["resets_at"].endswith("+00:00")
    bad = runner.invoke(app, ["limits", "list", "--ledger", path, "--format", "xml"])
    assert bad.exit_code == 2 and "--format must be one of table, csv, json" in bad.output


def test_delete_validates_before_before_asking(tmp_path: Path) -> None:
    """#5: a bad --before fails at once (no confirmation prompt, nothing deleted)."""
    path = _limits_ledger(tmp_path)
    result = runner.invoke(app, ["delete", "--before", "garbage", "--ledger", path], input="y\n")
    assert result.exit_code == 2 and "not a time" in result.output
    assert "Delete every event" not in result.output
    llmledger.init(ledger=path)
    assert len(llmledger.events()) == 1


def test_top_up_of_an_unknown_limit_names_the_cli_command(tmp_path: Path) -> None:
    """#5: the CLI's hint is `llmledger limits list`, like `limits rm`."""
    path = _limits_ledger(tmp_path)
    result = runner.invoke(app, ["limits", "top-up", "lim_nope", "5", "--ledger", path])
    assert result.exit_code == 2 and "see `llmledger limits list`" in result.output
    assert "llmledger.limits()" not in result.output


@pytest.mark.parametrize("per", ["rolling:99999999d", "rolling:367d", "rolling:53w", "rolling:8784h1"])
def test_rolling_windows_are_bounded(tmp_path: Path, per: str) -> None:
    """#6: at most 366 days; a typed error otherwise (and the CLI says so)."""
    llmledger.init(ledger=str(tmp_path / "r.db"))
    with pytest.raises(llmledger.LimitDefinitionError, match=r"per=.*(at most 366 days|needs a span)"):
        llmledger.set_limit(usd=1, per=per, tenant="a")
    assert llmledger.set_limit(usd=1, per="rolling:366d", tenant="a").window.seconds == 366 * 86_400
    result = runner.invoke(
        app,
        [
            "limits",
            "set",
            "--usd",
            "1",
            "--per",
            "rolling:99999999d",
            "--tenant",
            "b",
            "--ledger",
            str(tmp_path / "r.db"),
        ],
    )
    assert result.exit_code == 2 and "at most 366 days" in result.output


@pytest.mark.parametrize(("metric", "amount"), [("usd", float("nan")), ("usd", "-1x"), ("tokens", 1.5)])
def test_top_up_errors_name_amount(tmp_path: Path, metric: str, amount: object) -> None:
    """#19: the parameter the caller passed is `amount`, not the limit's metric."""
    llmledger.init(ledger=str(tmp_path / "t.db"))
    limit = llmledger.set_limit(**{metric: 100}, per="lifetime", tenant="*")  # type: ignore[arg-type]
    with pytest.raises(llmledger.LimitDefinitionError, match=r"^amount must be") as caught:
        llmledger.top_up(limit.id, amount, tenant="t1")
    assert f"{metric} must" not in str(caught.value)
    assert llmledger.top_up(limit.id, 5, tenant="t1") == 5


def _quarantined(tmp_path: Path) -> str:
    """A ledger holding one good event and one quarantined row that can never be stored."""
    from llmledger.sdk import runtime as _rt
    from llmledger.storage import quarantine

    path = str(tmp_path / "q.db")
    llmledger.init(ledger=path)
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=10)
    llmledger.flush()
    with _rt.current().ledger.engine.begin() as conn:
        quarantine.insert(conn, [(None, "JSONDecodeError: Expecting ',' delimiter", '{"event_id": "x" "y"}')])
    llmledger.shutdown()
    return path


def test_quarantine_retry_of_an_unknown_row_says_so(tmp_path: Path) -> None:
    """#21: an id that does not exist is an error (rc 2), not `0 event(s) written`."""
    path = _quarantined(tmp_path)
    for missing in ("99999999999999999999", "0", "2"):
        result = runner.invoke(app, ["quarantine", "retry", missing, "--ledger", path])
        assert result.exit_code == 2, result.output
        assert f"no quarantined row {missing}" in result.output and "written" not in result.output
    kept = runner.invoke(app, ["quarantine", "retry", "1", "--ledger", path])
    assert kept.exit_code == 0 and "0 event(s) written, 1 still quarantined" in kept.output


def test_quarantine_show_and_drop(tmp_path: Path) -> None:
    """#21: a row that can never be fixed can be seen (its payload) and discarded from the CLI."""
    path = _quarantined(tmp_path)
    shown = runner.invoke(app, ["quarantine", "show", "1", "--ledger", path])
    assert shown.exit_code == 0, shown.output
    assert '{"event_id": "x" "y"}' in shown.output and "JSONDecodeError" in shown.output
    assert runner.invoke(app, ["quarantine", "show", "7", "--ledger", path]).exit_code == 2
    refused = runner.invoke(app, ["quarantine", "drop", "1", "--ledger", path], input="n\n")
    assert refused.exit_code == 1 and "nothing discarded" in refused.output
    assert "1 event(s)" in runner.invoke(app, ["quarantine", "list", "--ledger", path]).output
    dropped = runner.invoke(app, ["quarantine", "drop", "1", "--ledger", path], input="y\n")
    assert dropped.exit_code == 0 and "discarded quarantined row 1" in dropped.output
    assert "0 event(s)" in runner.invoke(app, ["quarantine", "list", "--ledger", path]).output
    again = runner.invoke(app, ["quarantine", "drop", "1", "--yes", "--ledger", path])
    assert again.exit_code == 2 and "no quarantined row 1" in again.output
    llmledger.init(ledger=path)
    assert len(llmledger.events()) == 1  # the ledger's events are untouched


def test_unpriced_rows_never_read_as_free_in_tables(tmp_path: Path) -> None:
    """#25: a row of unpriced calls shows `unpriced`, not `$0.00`; csv/json stay exact (events: null)."""
    path = str(tmp_path / "u.db")
    llmledger.init(ledger=path)
    llmledger.track(provider="openai", model="ft:gpt-4o-mini:acme::demo", input_tokens=1000, tenant="a")
    llmledger.track(provider="openai", model="gpt-4o-mini", input_tokens=1000, tenant="b")
    llmledger.shutdown()
    table = runner.invoke(app, ["report", "--by", "model", "--ledger", path], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    line = next(x for x in table.output.splitlines() if x.startswith("ft:gpt-4o-mini"))
    assert "unpriced" in line and "$0.00 " not in line
    priced = next(x for x in table.output.splitlines() if x.startswith("gpt-4o-mini"))
    assert "$0.00015" in priced
    rows = list(
        csv.DictReader(
            io.StringIO(runner.invoke(app, ["report", "--by", "model", "--ledger", path, "-f", "csv"]).output)
        )
    )
    ft = next(r for r in rows if r["model"].startswith("ft:"))
    assert (ft["cost_usd"], ft["unpriced_requests"]) == ("0", "1")
    events = json.loads(runner.invoke(app, ["events", "--ledger", path, "-f", "json"]).output)
    assert [e["cost_usd"] for e in events if e["model"].startswith("ft:")] == [None]
    listed = runner.invoke(app, ["events", "--ledger", path], env={"COLUMNS": "200"})
    ft_event = next(x for x in listed.output.splitlines() if "ft:gpt-4o-mini" in x)
    assert "unpriced" in ft_event and "$0.00 " not in ft_event
