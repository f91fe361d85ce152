"""CSV cells a spreadsheet will not run: one rule for every CSV llmledger writes (API and CLI)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["safe_cell"]

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value`, with a `'` before a text a spreadsheet would run as a formula (one starting with
    `=`, `+`, `-`, `@`, a tab or a carriage return; OWASP's CSV injection rule). Attribution values
    come from end users (a gateway header, the OpenAI `user` field). A signed number ("-0.5") is
    left as it is: it is data, and a spreadsheet reads it as a number."""
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        if value[:1] in "+-":
            try:
                if Decimal(value).is_finite():
                    return value
            except InvalidOperation:
                pass
        return "'" + value
    return value
