"""Middleware that attributes every web request's LLM calls, and always resets it afterwards.

- ASGI (FastAPI, Starlette, any ASGI app): `llmledger.integrations.asgi.LedgerMiddleware`
- WSGI (Flask, any WSGI app): `llmledger.integrations.wsgi.LedgerMiddleware`
- Django: `"llmledger.integrations.django.LedgerMiddleware"` in `MIDDLEWARE`

Each takes an `attribution` function: request -> `{"tenant": ..., "user": ..., "feature": ...,
"tags": {...}}` (the ASGI scope, the WSGI environ, the Django `HttpRequest`). `from_headers(...)`
builds one that reads request headers. The request's attribution REPLACES whatever the worker thread
or task held before, and the previous value is restored when the request ends (also when it fails),
so a reused worker never bills one request to the previous request's tenant. A fault in the
attribution function (or a bad value: an oversized or control-character tenant) is logged and
counted (`stats().internal_errors`); the request goes on unattributed, outside every per-tenant
limit — or, with `on_attribution_fault="closed"`, is refused (400 / 500) without running.
"""

from llmledger.integrations.common import AttributionFault, Attributor, from_headers

__all__ = ["AttributionFault", "Attributor", "from_headers"]
