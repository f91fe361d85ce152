"""`llmledger keys create | list | revoke` on the server's ledger (newcomer report item 7: a key
written to a new ./llmledger.db was a key the server never saw)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmledger.cli.app import app as cli
from llmledger.storage import Ledger
from llmledger.storage.keys import KeyStore


def test_create_list_revoke_on_an_existing_ledger(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    Ledger(str(db)).close()
    runner = CliRunner()
    made = runner.invoke(
        cli, ["keys", "create", "--scope", "ingest", "--tenant", "acme", "--ledger", str(db)]
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    ledger = Ledger(str(db))
    try:
        key = KeyStore(ledger.engine).verify(secret)
        assert key is not None and key.scope == "ingest" and key.tenant == "acme"
    finally:
        ledger.close()
    listed = runner.invoke(cli, ["keys", "list", "--ledger", str(db)])
    assert listed.exit_code == 0 and key.key_id in listed.output and secret not in listed.output
    revoked = runner.invoke(cli, ["keys", "revoke", key.key_id, "--ledger", str(db)])
    assert revoked.exit_code == 0, revoked.output
    ledger = Ledger(str(db))
    try:
        assert KeyStore(ledger.engine).verify(secret) is None
    finally:
        ledger.close()


@pytest.mark.parametrize("command", [["create", "--scope", "read"], ["list"], ["revoke", "key_x"]])
def test_a_ledger_that_does_not_exist_is_refused_not_created(
    tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMLEDGER_DB", raising=False)
    for ledger in ([], ["--ledger", str(tmp_path / "typo.db")]):
        result = CliRunner().invoke(cli, ["keys", *command, *ledger])
        assert result.exit_code == 2, result.output
        assert "no ledger at" in result.output and "--ledger" in result.output
    assert not list(tmp_path.iterdir())  # nothing created
