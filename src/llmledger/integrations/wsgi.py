"""WSGI middleware (Flask, any WSGI framework): attribute each request, then reset.

```python
from flask import Flask
from llmledger.integrations import from_headers
from llmledger.integrations.wsgi import LedgerMiddleware

app = Flask(__name__)
app.wsgi_app = LedgerMiddleware(app.wsgi_app, attribution=from_headers(tenant="x-tenant-id"))
```

The attribution holds while the app runs and while the server reads a streamed response, and is
reset when the response is closed (or at once if the app raises).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextvars import Token
from typing import Any

from llmledger.attribution.context import Attribution, _current
from llmledger.integrations.common import AttributionFault, Attributor, Refusal, fault_mode, resolve

__all__ = ["LedgerMiddleware"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Body:
    """The app's response body: iterated under the request's attribution, which `close()` resets."""

    def __init__(self, body: Iterable[bytes], token: Token[Attribution]) -> None:
        self.body = body
        self.token: Token[Attribution] | None = token

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            token, self.token = self.token, None
            if token is not None:
                _current.reset(token)


class LedgerMiddleware:
    """`LedgerMiddleware(wsgi_app, attribution=fn)`: `fn(environ)` gives the request's attribution.

    `on_attribution_fault="closed"` refuses a request whose attribution is bad (400) or failed (500)
    instead of running it unattributed (see `AttributionFault`).
    """

    def __init__(
        self, app: WSGIApp, attribution: Attributor, on_attribution_fault: AttributionFault = "open"
    ) -> None:
        if not callable(attribution):
            raise TypeError("attribution must be a function of the WSGI environ, e.g. from_headers(...)")
        self.app = app
        self.attribution = attribution
        self.on_fault = fault_mode(on_attribution_fault)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        who = resolve(self.attribution, environ, self.on_fault)
        if isinstance(who, Refusal):
            status = "400 Bad Request" if who.status == 400 else "500 Internal Server Error"
            length = str(len(who.body))
            start_response(
                status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", length)]
            )
            return [who.body]
        token = _current.set(who)
        try:
            body = self.app(environ, start_response)
        except BaseException:
            _current.reset(token)
            raise
        return _Body(body, token)
