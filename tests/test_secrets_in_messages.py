"""A database password never appears in an error message or a startup line (newcomer report, item 4)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import llmledger
from llmledger._urls import redact_url
from llmledger.cli.app import app as cli
from llmledger.errors import LlmLedgerError
from llmledger.storage import Ledger

pytest.importorskip("psycopg")

SECRET = "s3cr3t-pw"
URLS = [
    f"postgresql://alice:{SECRET}@127.0.0.1:1/db",
    f"postgres://alice:{SECRET}@127.0.0.1:1/db?connect_timeout=1",
    f"postgresql+psycopg://alice:{SECRET}@[::1]:1/db",
]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://:pw@h:5/db", "postgresql://:***@h:5/db"),
        ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),
        ("not a url u:pw@h", "not a url u:pw@h"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", URLS)
def test_opening_a_ledger_that_fails_hides_the_password(url: str) -> None:
    with pytest.raises(LlmLedgerError) as caught:
        Ledger(url)
    assert SECRET not in str(caught.value) and "***" in str(caught.value)


def test_init_and_the_cli_hide_the_password() -> None:
    with pytest.raises(LlmLedgerError) as caught:
        llmledger.init(ledger=URLS[0])
    assert SECRET not in str(caught.value)
    for args in (["report"], ["events"], ["doctor"]):
        result = CliRunner().invoke(cli, [*args, "--ledger", URLS[0]])
        assert result.exit_code != 0
        assert SECRET not in result.output, result.output
