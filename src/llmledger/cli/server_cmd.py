"""`llmledger serve` and `llmledger keys create | list | revoke` (the server's extra: `[server]`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmledger._urls import redact_url
from llmledger.cli.app import LedgerOpt, _fail, app, console, errors
from llmledger.cli.proxy_cmd import AllowOpt, with_gateway
from llmledger.errors import ConfigError, LlmLedgerError

if TYPE_CHECKING:
    from llmledger.engine import Engine

__all__ = ["keys_app"]

keys_app = typer.Typer(help="API keys of the server: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

_NEEDS_EXTRA = "the server needs its extra: pip install 'llmledger[server]'"


def dashboard_link(application: object, base: str) -> str:
    """A fresh one-time login link to the dashboard of a `create_app()` app (or of the server app
    inside `llmledger serve`'s app with the gateway mounted beside it)."""
    from llmledger.server.session import login_url

    server: Any = getattr(application, "app", application)  # WithGateway keeps the server app in `.app`
    return login_url(base, server.state.sessions)


@app.command()
def serve(
    ledger: LedgerOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8787]")] = None,
    config: Annotated[Path | None, typer.Option(help="A TOML settings file ([server] table)")] = None,
    prices: Annotated[Path | None, typer.Option(help="A price overrides TOML file")] = None,
    allow_upstream: AllowOpt = None,
) -> None:
    """Serve the ledger over HTTP: ingest, reports, keys, metrics (see docs/server.md), and the
    metering gateway under /v1 and /anthropic (docs/gateway.md)."""
    try:
        import uvicorn

        from llmledger.server import ServerSettings
    except ImportError as exc:
        raise _fail(f"{_NEEDS_EXTRA} ({exc})") from exc
    try:
        settings = ServerSettings.load(
            {"ledger": ledger, "host": host, "port": port, "prices": str(prices) if prices else None},
            file=config,
        )
        application = with_gateway(settings, allow_upstream, config)
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    from llmledger.cli.demo_serve import listen

    sock = listen(settings.host, settings.port)  # bound and listening before anything is printed
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    base = f"http://{shown}:{sock.getsockname()[1]}"
    errors.print(f"llmledger {redact_url(settings.ledger)} serving on {base}")
    errors.print(f"dashboard (one-time login link): {dashboard_link(application, base)}")
    # SIGTERM: uvicorn stops accepting, finishes the requests in flight (up to 10 s), closes the
    # ledger, then re-raises the signal to the handler it found: this one exits with status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    served = uvicorn.Config(application, log_level="warning", timeout_graceful_shutdown=10)
    uvicorn.Server(served).run(sockets=[sock])


def _engine(ledger: str | None) -> Engine:
    """The engine on the server's ledger. A SQLite file that does not exist is refused, not created:
    a key written to a new file is a key the server never sees (it would answer 401)."""
    from llmledger.engine import Engine
    from llmledger.sdk.runtime import DEFAULT_DB
    from llmledger.storage.engine import sqlite_path

    url = ledger or f"sqlite:///{DEFAULT_DB}"
    path = sqlite_path(url)
    if path is not None and not Path(path).exists():
        raise ConfigError(
            f"no ledger at {path}: pass --ledger (or set LLMLEDGER_DB) naming the ledger "
            "`llmledger serve` uses; serve creates it at its first start"
        )
    return Engine(url)


@keys_app.command("create")
def create_cmd(
    scope: Annotated[str, typer.Option(help="admin, ingest or read")],
    tenant: Annotated[str | None, typer.Option(help="Bind the key to one tenant")] = None,
    name: Annotated[str | None, typer.Option(help="A name to recognise the key by")] = None,
    ledger: LedgerOpt = None,
) -> None:
    """Create a key and print it (alone, on the last line): it is shown this once."""
    try:
        engine = _engine(ledger)
        new = engine.keys.create(scope, tenant=tenant, name=name)
        engine.close()
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    bound = f", tenant {new.key.tenant}" if new.key.tenant else ""
    errors.print(f"created key {new.key.key_id} (scope {new.key.scope}{bound}); it is not shown again:")
    print(new.secret)


@keys_app.command("list")
def list_cmd(ledger: LedgerOpt = None) -> None:
    """Every key (never its secret)."""
    from rich.markup import escape
    from rich.table import Table

    try:
        engine = _engine(ledger)
        keys = engine.keys.list()
        engine.close()
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    table = Table("key id", "scope", "tenant", "name", "created", "revoked")
    for k in keys:
        table.add_row(
            k.key_id,
            k.scope,
            escape(k.tenant or ""),
            escape(k.name or ""),
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_cmd(key_id: str, ledger: LedgerOpt = None) -> None:
    """Revoke a key."""
    try:
        engine = _engine(ledger)
        done = engine.keys.revoke(key_id)
        engine.close()
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    if not done:
        raise _fail(f"no active key {key_id!r}")
    errors.print(f"revoked {key_id}")
