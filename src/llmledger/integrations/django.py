"""Django middleware: attribute each request, then reset.

```python
# settings.py
MIDDLEWARE = [..., "llmledger.integrations.django.LedgerMiddleware"]
LLMLEDGER_ATTRIBUTION = "myproject.billing.attribution"  # request -> {"tenant": ..., "user": ...}
LLMLEDGER_ON_ATTRIBUTION_FAULT = "closed"  # refuse a request whose attribution is bad (default "open")
```

Without `LLMLEDGER_ATTRIBUTION`, an authenticated request is attributed to `user=<username>`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmledger.integrations.common import AttributionFault, Attributor, Refusal, fault_mode, resolve, scoped

__all__ = ["LedgerMiddleware", "user_attribution"]


def user_attribution(request: Any) -> dict[str, Any]:
    """`{"user": <username>}` for an authenticated request (django.contrib.auth), else nothing."""
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return {"user": str(user.get_username())}
    return {}


def _configured() -> Attributor:
    from django.conf import settings
    from django.utils.module_loading import import_string

    found = getattr(settings, "LLMLEDGER_ATTRIBUTION", None)
    if found is None:
        return user_attribution
    function = import_string(found) if isinstance(found, str) else found
    if not callable(function):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("LLMLEDGER_ATTRIBUTION must be a function of the request (or its path)")
    return function  # type: ignore[no-any-return]


class LedgerMiddleware:
    """Sets the request's attribution around the view, and restores the previous one after it."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from django.conf import settings

        self.get_response = get_response
        self.attribution = _configured()
        self.on_fault: AttributionFault = fault_mode(
            getattr(settings, "LLMLEDGER_ON_ATTRIBUTION_FAULT", "open")
        )

    def __call__(self, request: Any) -> Any:
        who = resolve(self.attribution, request, self.on_fault)
        if isinstance(who, Refusal):
            from django.http import HttpResponse

            return HttpResponse(who.body, status=who.status, content_type="text/plain; charset=utf-8")
        with scoped(who):
            return self.get_response(request)
