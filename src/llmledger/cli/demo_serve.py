"""`llmledger demo --serve`: serve the demo's ledger with `llmledger serve`'s app and a new admin key."""

from __future__ import annotations

import signal
import socket
import sys

from rich.console import Console
from rich.text import Text

from llmledger.cli.app import fail

__all__ = ["listen", "print_access", "serve_ledger"]


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (0: a free port) and listening, or `error: cannot listen ...`
    (exit 2): the URL and login link are printed only once the server can be reached there."""
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port or --host")
    return sock


def print_access(console: Console, url: str, admin_key: str, login_link: str | None = None) -> None:
    """Tell the user where the server is and how to get in."""
    console.print(Text.assemble("\nServing the demo ledger at ", (url, "bold"), "  (Ctrl-C stops it)"))
    if login_link is not None:
        console.print(
            Text.assemble("Dashboard (one-time login link): ", (login_link, "bold")), soft_wrap=True
        )
    console.print(Text.assemble("Admin key: ", (admin_key, "bold")), soft_wrap=True)
    console.print(
        f'Try: curl -H "Authorization: Bearer {admin_key}" "{url}/api/v1/usage?group_by=tenant"',
        soft_wrap=True,
    )
    console.file.flush()


def serve_ledger(console: Console, ledger: str, host: str, port: int) -> None:
    """Serve `ledger` on `host:port` (0: a free port) until Ctrl-C / SIGTERM, with a new admin key."""
    try:
        import uvicorn

        from llmledger.server import ServerSettings, create_app
        from llmledger.server.session import login_url
    except ImportError as exc:
        fail(f"--serve needs the server's extra: pip install 'llmledger[server]' ({exc})")
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    settings = ServerSettings.load({"ledger": ledger, "host": host, "port": bound}, env={})
    app = create_app(settings)
    admin = app.state.ledger.engine.keys.create("admin", name="llmledger demo --serve")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}"
    print_access(console, url, admin.secret, login_url(url, app.state.sessions))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
    # uvicorn drains, then re-raises SIGTERM to the handler it found: make that one end the demo
    # normally, so its temporary ledger is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run(sockets=[sock])
