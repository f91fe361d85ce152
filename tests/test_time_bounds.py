"""Time bounds at the edge of what a datetime holds: a typed error (422 over HTTP, rc 2 on the CLI),
never a raw OverflowError or a 500 (newcomer report, items 1, 3 and 10)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import llmledger
from llmledger._time import parse_time_bound
from llmledger.cli.app import app as cli
from llmledger.errors import InvalidQueryError
from llmledger.server import ServerSettings, create_app

ADMIN = "llk_0123456789abcdef_time-bounds-admin-key-00001"
FAR = ["99999999d", "999999999999w", "99999999999y", "0001-01-01", "0001-01-01T00:00:00+01:00"]


@given(st.integers(min_value=0, max_value=10**30), st.sampled_from("smhdwy"))
def test_any_duration_is_a_time_or_a_typed_error(count: int, unit: str) -> None:
    try:
        at = parse_time_bound(f"{count}{unit}")
    except InvalidQueryError:
        return
    assert at is not None and at.tzinfo is not None


@pytest.mark.parametrize("bound", [timedelta.max, datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))])
def test_python_objects_out_of_range_are_typed_errors(bound: object) -> None:
    with pytest.raises(InvalidQueryError):
        parse_time_bound(bound)  # type: ignore[arg-type]


@pytest.mark.parametrize("since", ["99999999d", "999999999999w"])
def test_sdk_queries_refuse_a_window_before_year_one(tmp_path: Path, since: str) -> None:
    llmledger.init(ledger=str(tmp_path / "l.db"))
    try:
        for query in (llmledger.spend, llmledger.events, llmledger.usage):
            with pytest.raises(InvalidQueryError, match=r"since|duration|past"):
                query(since=since)
        with pytest.raises(InvalidQueryError, match="limit"):
            llmledger.events(limit=10**20)
    finally:
        llmledger.shutdown()


def test_cli_answers_rc_2_naming_the_option(tmp_path: Path) -> None:
    db = str(tmp_path / "l.db")
    runner = CliRunner()
    for args in (["report", "--since", "99999999d"], ["events", "--since", "99999999d"]):
        result = runner.invoke(cli, [*args, "--ledger", db])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    result = runner.invoke(cli, ["events", "--limit", str(10**20), "--ledger", db])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(ServerSettings.load({"ledger": str(tmp_path / "s.db"), "admin_key": ADMIN}))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


@pytest.mark.parametrize("since", FAR)
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/usage",
        "/api/v1/spend",
        "/api/v1/events",
        "/api/v1/dashboard/overview",
        "/api/v1/dashboard/events.csv",
        "/api/v1/dashboard/alerts",
    ],
)
def test_every_read_route_answers_a_far_bound_without_a_500(api: TestClient, path: str, since: str) -> None:
    response = api.get(path, params={"since": since})
    assert response.status_code in (200, 422), (response.status_code, response.text)


@pytest.mark.parametrize("until", ["9999-12-31T23:59:59Z", "9999-12-31"])
@pytest.mark.parametrize("path", ["/api/v1/usage", "/api/v1/dashboard/overview", "/api/v1/events"])
def test_an_until_at_the_end_of_time_is_no_500(api: TestClient, path: str, until: str) -> None:
    response = api.get(path, params={"since": "2026-01-01", "until": until})
    assert response.status_code in (200, 422), (response.status_code, response.text)
