"""The command line: report, events, prices and demo, as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import llmledger
from llmledger._csv import safe_cell
from llmledger.cli import app

runner = CliRunner()


@pytest.fixture
def filled(ledger_path: Path) -> Path:
    llmledger.init(ledger=str(ledger_path))
    for tenant, model, n in (("acme", "gpt-4o", 3), ("globex", "gpt-4o-mini", 2)):
        for _ in range(n):
            llmledger.track(
                provider="openai", model=model, input_tokens=1000, output_tokens=100, tenant=tenant
            )
    llmledger.track(provider="openai", model="ft:custom", input_tokens=5, tenant="acme")
    llmledger.shutdown()
    return ledger_path


def test_report_json_has_exact_costs(filled: Path) -> None:
    result = runner.invoke(
        app, ["report", "--ledger", str(filled), "--by", "tenant,model", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    acme = next(r for r in rows if r["tenant"] == "acme" and r["model"] == "gpt-4o")
    assert acme["requests"] == 3 and Decimal(acme["cost_usd"]) == Decimal(
        "0.0105"
    )  # 3 × (1000 × $2.50 + 100 × $10) / 1M
    custom = next(r for r in rows if r["model"] == "ft:custom")
    assert custom["unpriced_requests"] == 1


def test_report_csv_and_table(filled: Path) -> None:
    result = runner.invoke(app, ["report", "--ledger", str(filled), "--by", "tenant", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert {r["tenant"]: r["requests"] for r in rows} == {"acme": "4", "globex": "2"}
    table = runner.invoke(app, ["report", "--ledger", str(filled), "--by", "tenant"])
    assert table.exit_code == 0 and "acme" in table.output and "unpriced" in table.output


def test_events_filtered(filled: Path) -> None:
    result = runner.invoke(app, ["events", "--ledger", str(filled), "--tenant", "globex", "--format", "json"])
    assert result.exit_code == 0, result.output
    events = [llmledger.UsageEvent.from_dict(e) for e in json.loads(result.output)]
    assert len(events) == 2 and {e.tenant for e in events} == {"globex"}


def test_prices_shows_price_and_source(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prices", "gpt-4o-mini", "--provider", "openai"])
    assert result.exit_code == 0, result.output
    assert (
        "openai/gpt-4o-mini" in result.output and "input_mtok" in result.output and "$0.15" in result.output
    )
    assert "genai-prices" in result.output
    overrides = tmp_path / "p.toml"
    overrides.write_text('[[prices]]\nprovider="acme"\nmodel="m1"\ninput_mtok="0.5"\n')
    result = runner.invoke(app, ["prices", "m1", "--provider", "acme", "--prices", str(overrides)])
    assert result.exit_code == 0, result.output
    assert "override" in result.output and "$0.5" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prices", "no-such-model-xyz", "--provider", "openai"], "not in the price catalogue"),
        (["report", "--by", "planet"], "cannot group by"),
        (["report", "--format", "xml"], "--format must be one of"),
        (["events", "--since", "last tuesday"], "not a time"),
    ],
)
def test_cli_errors_are_clear(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    result = runner.invoke(app, ["demo", "--ledger", str(path), "--calls", "12"])
    assert result.exit_code == 0, result.output
    assert "Spend by tenant and feature" in result.output
    assert "unpriced: 1" in result.output
    found = re.findall(
        r"(\d+) trial calls admitted; (\d+) trial calls refused", " ".join(result.output.split())
    )
    admitted, refused = (int(x) for x in found[0])
    assert admitted + refused == 10 and admitted > 0 and refused > 0  # the spend-limit step
    llmledger.init(ledger=str(path))
    events = llmledger.events(limit=None)
    assert len(events) == 13 + admitted  # refused calls never reached the provider: no event
    assert llmledger.reconcile() == []
    assert {e.provider for e in events} <= {"openai", "anthropic"}
    assert all(e.tenant for e in events)
    assert sum(1 for e in events if e.cost_usd is None) == 1


def test_limits_commands_and_reconcile(tmp_path: Path) -> None:
    path = str(tmp_path / "limits.db")
    made = runner.invoke(
        app, ["limits", "set", "--ledger", path, "--usd", "50", "--per", "month", "--tenant", "acme"]
    )
    assert made.exit_code == 0, made.output
    limit_id = made.output.split()[0]
    each = runner.invoke(
        app,
        [
            "limits",
            "set",
            "--ledger",
            path,
            "--usd",
            "1",
            "--per",
            "day",
            "--user",
            "*",
            "--tag",
            "plan=free",
        ],
    )
    assert each.exit_code == 0, each.output
    listed = runner.invoke(app, ["limits", "list", "--ledger", path])
    assert listed.exit_code == 0 and limit_id in listed.output
    assert "tag plan=free" in listed.output and "each user" in listed.output
    bad = runner.invoke(app, ["limits", "set", "--ledger", path, "--usd", "1", "--per", "fortnight"])
    assert bad.exit_code == 2 and "per='fortnight'" in bad.output
    ok = runner.invoke(app, ["reconcile", "--ledger", path])
    assert ok.exit_code == 0 and "equal the ledger" in ok.output
    assert runner.invoke(app, ["limits", "rm", "--ledger", path, limit_id]).exit_code == 0
    assert runner.invoke(app, ["limits", "rm", "--ledger", path, limit_id]).exit_code == 2


FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "@SUM(A1)", "-2+3"]


def test_csv_exports_never_hold_a_spreadsheet_formula(ledger_path: Path) -> None:
    # Regression (newcomer report, 2026-12-02, item 10): the API's CSV neutralised formulas, the
    # command line's did not; attribution values come from end users (gateway headers, `user`).
    llmledger.init(ledger=str(ledger_path))
    for value in FORMULAS:
        llmledger.track(
            provider="openai", model="gpt-4o-mini", input_tokens=10, tenant="t", user=value, feature=value
        )
    llmledger.shutdown()
    report = runner.invoke(app, ["report", "--ledger", str(ledger_path), "--by", "user,feature", "-f", "csv"])
    events = runner.invoke(app, ["events", "--ledger", str(ledger_path), "--tenant", "t", "-f", "csv"])
    for result in (report, events):
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO(result.output)))
        assert len(rows) == 4
        cells = [cell for row in rows for cell in row.values() if cell]
        assert not [c for c in cells if c[0] in "=+@" or (c[0] == "-" and not re.fullmatch(r"-[\d.]+", c))]
        assert {row["user"] for row in rows} == {"'" + v for v in FORMULAS}


@given(st.text(max_size=12))
def test_safe_cell_never_starts_a_formula(text: str) -> None:
    out = safe_cell(text)
    if out != text:
        assert out == "'" + text
    elif text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        assert Decimal(text).is_finite()  # only a signed number is left as it is
