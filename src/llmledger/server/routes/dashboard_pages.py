"""The dashboard's pages at `/` (same server and port as the API): the built front end, and login.

`GET /login?token=...` redeems the one-time link `llmledger serve` prints; `POST /login` (form
field `key`) opens a session for an API key; `POST /logout` ends it. The pages are one built
bundle (`llmledger/dashboard/static/`, no CDN, no Node needed at run time) served for each page
path, so filters live in the URL (`/events?tenant=acme&since=7d`).
"""

from __future__ import annotations

import hmac
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from llmledger.server.session import COOKIE, Sessions, session_of, set_cookie

__all__ = ["PAGES", "router", "static_dir"]

router = APIRouter(include_in_schema=False)

PAGES = ("/", "/tenant", "/limits", "/events", "/prices", "/live", "/login")
"""The page paths; each serves the same bundle, which draws the page the path names."""


def static_dir() -> Path:
    """The built front end's folder inside the package (`make web` builds it)."""
    return Path(str(resources.files("llmledger.dashboard") / "static"))


_MISSING = """<!doctype html><meta charset="utf-8"><title>llmledger</title>
<p>The dashboard's front end is not built in this checkout: run <code>make web</code>
(a wheel ships it built).</p>"""


def _index() -> Response:
    index = static_dir() / "index.html"
    if not index.is_file():
        return HTMLResponse(_MISSING, status_code=503)
    return FileResponse(index, media_type="text/html", headers={"Cache-Control": "no-store"})


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


for _path in PAGES:

    @router.get(_path, response_model=None)
    async def page(request: Request, token: str | None = None) -> Response:
        if request.url.path == "/login" and token:
            session = _sessions(request).redeem(token)
            if session is None:
                return RedirectResponse("/login?expired=1", status_code=303)
            response = RedirectResponse("/", status_code=303)
            set_cookie(response, request, session.sid)
            return response
        return _index()


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    """Open a session for an API key (form field `key`; its scope and tenant)."""
    body = await request.body()
    if len(body) > 4096:
        raise HTTPException(413, "the login form is at most 4 KiB")
    key = parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0]
    found = request.app.state.ledger.verify(key.strip()) if key.strip() else None
    if found is None or not found.allows("read"):
        return RedirectResponse("/login?failed=1", status_code=303)
    session = _sessions(request).open_for_key(found)
    response = RedirectResponse("/", status_code=303)
    set_cookie(response, request, session.sid)
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    session = session_of(request)
    if session is not None:
        sent = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent, session.csrf):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header")
        _sessions(request).close(session.sid)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    """A built asset (hashed file names: cached for a year)."""
    folder = static_dir() / "assets"
    path = folder / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(404, "no such asset")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})
