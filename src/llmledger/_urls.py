"""Database URLs fit for messages and logs (no SQLAlchemy import: the CLI prints them at startup)."""

from __future__ import annotations

import re

__all__ = ["redact_url"]

_PASSWORD = re.compile(r"(://[^:/?#@]*):[^@/?#]*@")


def redact_url(url: str) -> str:
    """`url` with the password of its user-info replaced by `***`: `postgresql://u:***@host/db`.
    Works on URLs SQLAlchemy cannot parse too (those end up in error messages)."""
    return _PASSWORD.sub(r"\1:***@", url)
