"""`llmledger proxy`: the metering gateway alone (the server's extra: `[server]`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmledger._urls import redact_url
from llmledger.cli.app import LedgerOpt, _fail, app, errors
from llmledger.errors import LlmLedgerError

if TYPE_CHECKING:
    from llmledger.server import ServerSettings

__all__ = ["AllowOpt", "proxy", "with_gateway"]

AllowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-upstream",
        metavar="URL",
        help="Also allow this upstream base URL (repeatable; also LLMLEDGER_ALLOWED_UPSTREAMS)",
    ),
]


@app.command()
def proxy(
    ledger: LedgerOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8787]")] = None,
    config: Annotated[
        Path | None, typer.Option(help="A TOML settings file ([server] and [gateway] tables)")
    ] = None,
    prices: Annotated[Path | None, typer.Option(help="A price overrides TOML file")] = None,
    allow_upstream: AllowOpt = None,
) -> None:
    """Serve the OpenAI- and Anthropic-compatible metering gateway alone (see docs/gateway.md)."""
    try:
        import uvicorn

        from llmledger.engine import Engine
        from llmledger.gateway import GatewaySettings, create_gateway
        from llmledger.server import ServerSettings
        from llmledger.server.app import enforcement_policy
        from llmledger.server.state import RateLimiter
    except ImportError as exc:
        raise _fail(f"the gateway needs the server's extra: pip install 'llmledger[server]' ({exc})") from exc
    try:
        settings = ServerSettings.load(
            {"ledger": ledger, "host": host, "port": port, "prices": str(prices) if prices else None},
            file=config,
        )
        gateway_settings = GatewaySettings.load({"allow_upstreams": allow_upstream}, file=config)
        engine = Engine(settings.ledger, prices=settings.prices, policy=enforcement_policy(settings))
        gateway = create_gateway(
            gateway_settings, engine, ledger=settings.ledger, limiter=RateLimiter(settings.rate_limit)
        )
    except LlmLedgerError as exc:
        raise _fail(str(exc)) from exc
    if settings.admin_key is not None:
        try:
            engine.keys.create(
                "admin", name="LLMLEDGER_ADMIN_KEY", secret=settings.admin_key.get_secret_value()
            )
        except LlmLedgerError as exc:
            engine.close()
            raise _fail(f"admin_key (LLMLEDGER_ADMIN_KEY): {exc}") from exc
    from llmledger.cli.demo_serve import listen

    try:
        sock = listen(settings.host, settings.port)  # bound and listening before anything is printed
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        where = redact_url(settings.ledger)
        errors.print(f"llmledger gateway on http://{shown}:{sock.getsockname()[1]} (ledger {where})")
        # SIGTERM: uvicorn stops accepting, finishes the requests in flight (up to 10 s), flushes,
        # then re-raises the signal to the handler it found: this one exits with status 0 (as serve).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        served = uvicorn.Config(
            gateway,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # the gateway never reads the client's address: no middleware layer
            timeout_graceful_shutdown=10,
        )
        uvicorn.Server(served).run(sockets=[sock])
    finally:
        engine.close()


def with_gateway(settings: ServerSettings, allow_upstream: list[str] | None, config: Path | None) -> Any:
    """The server's app with the gateway mounted beside it, on one engine (for `llmledger serve`).
    Raises `LlmLedgerError` for bad settings."""
    from llmledger.engine import Engine
    from llmledger.gateway import GatewaySettings, create_gateway
    from llmledger.gateway.mount import WithGateway
    from llmledger.server import create_app
    from llmledger.server.app import enforcement_policy

    gateway_settings = GatewaySettings.load({"allow_upstreams": allow_upstream}, file=config)
    # one engine for the API and the gateway, with the server's limit settings (they were dropped)
    engine = Engine(settings.ledger, prices=settings.prices, policy=enforcement_policy(settings))
    try:
        app = create_app(settings, engine=engine)
        state = app.state.ledger  # the API's keys, rate limiter and metrics are the gateway's too
        gateway = create_gateway(
            gateway_settings,
            engine,
            ledger=settings.ledger,
            limiter=state.limiter,
            registry=state.metrics.registry,
        )
        state.on_forget_key.append(gateway.forget_key)  # revoked through the API: refused at once
        return WithGateway(app, gateway, engine)
    except BaseException:
        engine.close()
        raise
