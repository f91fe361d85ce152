"""Errors the gateway itself answers, in the calling provider's own error format, so the official
SDKs raise their usual classes (`openai.RateLimitError`, `anthropic.RateLimitError`,
`openai.AuthenticationError`, ...) with the message below.

OpenAI: `{"error": {"message", "type", "param", "code"}}`. Anthropic: `{"type": "error",
"error": {"type", "message"}}`. Every answer carries `X-Ledger-Error: <code>` so a client can
tell the gateway's own refusals from the provider's.
"""

from __future__ import annotations

import json

__all__ = ["error_body"]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    502: "api_error",
    503: "api_error",
    504: "api_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_body(family: str, status: int, message: str, code: str) -> bytes:
    """The JSON body of an error the gateway answers for a client of `family` (`openai` or
    `anthropic`); `code` is a short machine-readable reason (`limit_exceeded`, `bad_header`...)."""
    if family == "anthropic":
        payload: object = {
            "type": "error",
            "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message},
        }
    else:
        payload = {
            "error": {
                "message": message,
                "type": _OPENAI_TYPES.get(status, "api_error"),
                "param": None,
                "code": code,
            }
        }
    return json.dumps(payload, separators=(",", ":")).encode()
