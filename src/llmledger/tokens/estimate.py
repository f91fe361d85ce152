"""Token estimates: for calls whose provider reported no usage (a stream cut short, a text-only reply),
and for the `estimate` mode of spend limits.

An estimate is always marked `estimated=True` on the event. On the caller's thread it is ~4
characters a token, the rule of thumb OpenAI and Anthropic document for English; the writer thread
then counts the text with the model's tokenizer where one is public and offline (`llmledger.tokens`:
OpenAI's encodings; Anthropic and Gemini publish none), so the caller never waits for it to load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["estimate_from_chars", "estimate_tokens", "request_text"]

_TEXT_KEYS = frozenset(("content", "text", "input", "prompt", "system", "instructions", "contents", "parts"))
_CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Estimated tokens in `text` (0 for no text)."""
    return estimate_from_chars(len(text))


def estimate_from_chars(chars: int) -> int:
    """Estimated tokens in a text of `chars` characters."""
    return -(-chars // _CHARS_PER_TOKEN) if chars > 0 else 0


def request_text(body: Mapping[str, Any] | None) -> str:
    """The prompt text of a JSON request body: strings under message/content-like keys, joined."""
    if not body:
        return ""
    out: list[str] = []
    _collect(body, False, out, 0)
    return "".join(out)


def _collect(node: Any, texty: bool, out: list[str], depth: int) -> None:
    if depth > 32:
        return
    if isinstance(node, str):
        if texty:
            out.append(node)
    elif isinstance(node, Mapping):
        for key, value in node.items():  # a mapping's values are text by their own key only
            _collect(value, key in _TEXT_KEYS, out, depth + 1)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _collect(value, texty, out, depth + 1)
