"""Reading usage off the wire: server-sent events framed as they arrive, and stream readers that walk
the providers' JSON events with the same pure usage readers the SDK hooks use
(`llmledger.instrumentation.providers.openai.read` / `read_usage`, `...anthropic.read_usage`).

The SDK's stream readers walk the SDKs' parsed objects; these walk the JSON dicts of the same
events: where usage arrives, which event is final, and what text was generated (for the estimate
of a stream cut short) are the same rules, read from dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llmledger.instrumentation.providers import anthropic as _anthropic
from llmledger.instrumentation.providers import openai as _openai
from llmledger.instrumentation.usage import KEEP_CHARS, Generated, Usage, n

__all__ = ["SSEFramer", "WireReader", "loads", "read_body", "reader_for"]

from orjson import loads  # a stream event parsed in a fraction of the standard library's time


class SSEFramer:
    """Cuts a byte stream into whole server-sent events (each ending with a blank line), keeping the
    unfinished tail for the next chunk. Events are returned as they came (CRLF or LF)."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events `chunk` completes, in order (each with its terminating blank line)."""
        if not self._tail and chunk[-2:] == b"\n\n" and chunk.find(b"\n\n") == len(chunk) - 2:
            return [chunk]  # the usual case: one whole event per chunk
        data = self._tail + chunk if self._tail else chunk
        events: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n\n", start)
            crlf = data.find(b"\r\n\r\n", start)
            if crlf != -1 and (end == -1 or crlf < end):
                end, size = crlf, 4
            elif end != -1:
                size = 2
            else:
                break
            events.append(data[start : end + size])
            start = end + size
        self._tail = data[start:] if start < len(data) else b""
        return events

    def rest(self) -> bytes:
        """What is left unframed (a stream that ended without its last blank line)."""
        tail, self._tail = self._tail, b""
        return tail


def event_data(event: bytes) -> bytes | None:
    """The `data:` payload of one event (several data lines joined by newlines), or None."""
    if event.startswith(b"data:") and event.count(b"data:") == 1:
        body = event[5:].strip()
        return body or None
    lines = [
        line[5:].strip() for line in event.replace(b"\r\n", b"\n").split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(lines) if lines else None


PENDING_BYTES = 256 << 10
"""Bytes of text-only events a stream reader keeps unread before it reads them anyway (memory bound)."""


class WireReader(Generated):
    """One stream's reader: `event(obj)` looks at one parsed JSON event and says whether the client
    sees it; `usage()` is the usage so far; `final` once the provider's final usage has arrived.

    Most events of a stream carry only generated text, which matters only for the estimate of a
    stream cut short (its usage never arrives). `defer(data)` keeps such an event unread when a
    byte search shows it is one (it is relayed as it is); `catch_up()` reads what was kept, in
    order, before the text is wanted. A stream whose usage arrives never parses its text events:
    25.3-25.7k -> 20.0k instructions per chat chunk of the relay's own work (docs/performance.md)."""

    __slots__ = ("_pending", "_pending_size", "final")

    def __init__(self) -> None:
        super().__init__()
        self.final = False
        self._pending: list[bytes] = []
        self._pending_size = 0

    def event(self, obj: Mapping[str, Any]) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def usage(self) -> Usage | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def text_only(self, data: bytes) -> bool:
        """Whether the JSON event `data` can only add generated text (a byte search; False when in
        doubt: it is read at once)."""
        return False

    def defer(self, data: bytes) -> bool:
        """Keep the JSON event `data` unread if it only adds generated text (its client sees it)."""
        if not self.text_only(data):
            return False
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > PENDING_BYTES:
            self.catch_up()
        return True

    def catch_up(self) -> None:
        """Read the events `defer` kept, in order (before the text is wanted)."""
        pending, self._pending, self._pending_size = self._pending, [], 0
        for data in pending:
            try:
                obj = loads(data)
            except ValueError:
                continue
            self.event(obj)


class ChatWire(WireReader):
    """chat.completions / completions chunks: usage on the last chunk (`include_usage`), or inside
    the last choice (Moonshot); `hide`: the client did not ask for the usage chunk, so it is cut."""

    __slots__ = ("choice_usage", "first", "hide", "last")

    def __init__(self, hide: bool) -> None:
        super().__init__()
        self.hide = hide
        self.first: Mapping[str, Any] | None = None
        self.last: Mapping[str, Any] | None = None
        self.choice_usage: Any = None

    def defer(self, data: bytes) -> bool:
        # after the first chunk (its model and id are read), a chunk whose usage is null (top-level
        # and per choice) only adds text; an escaped name (`\u0075sage`) is read at once. Inlined
        # (no `text_only` call): this runs for every chunk of every chat stream
        if self.first is None or b"\\u00" in data:
            return False
        at = data.find(b'"usage"')
        while at != -1:
            if data[at + 7 : at + 12] != b":null":
                rest = data[at + 7 : at + 15].lstrip()
                if rest[:1] != b":" or rest[1:].lstrip()[:4] != b"null":
                    return False
            at = data.find(b'"usage"', at + 7)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > PENDING_BYTES:
            self.catch_up()
        return True

    def event(self, obj: Mapping[str, Any]) -> bool:
        choices = obj.get("choices")
        if self._pending and choices:  # its text comes after the text kept unread
            self.catch_up()
        if obj.get("usage") is None and self.first is not None and choices and len(choices) == 1:
            choice = choices[0]  # the usual chunk: one choice, one piece of content
            delta = choice.get("delta") if choice.__class__ is dict else None
            if delta is not None and len(delta) == 1 and choice.get("finish_reason") is None:
                piece = delta.get("content")
                if piece.__class__ is str:
                    if self.chars < KEEP_CHARS:
                        self.pieces.append(piece)
                    self.chars += len(piece)
                    return True
        return self._event(obj, choices or ())

    def _event(self, obj: Mapping[str, Any], choices: Any) -> bool:
        if obj.get("usage") is not None:
            self.last = obj
            self.final = True
            if not choices:
                return not self.hide
        elif self.first is None:
            self.first = obj
        for choice in choices:
            if not isinstance(choice, Mapping):
                continue
            if choice.get("finish_reason") is not None and choice.get("usage") is not None:
                self.choice_usage, self.final = choice["usage"], True
            delta = choice.get("delta")
            if not isinstance(delta, Mapping):  # legacy completions
                piece = choice.get("text")
                if isinstance(piece, str) and piece:
                    self.add(piece)
                continue
            piece = delta.get("content")
            if isinstance(piece, str) and piece:
                if self.chars < KEEP_CHARS:
                    self.pieces.append(piece)
                self.chars += len(piece)
            if len(delta) > 1 or "content" not in delta:
                for other in _openai._generated(delta, delta):
                    self.add(other)
        return True

    def usage(self) -> Usage | None:
        first = self.first
        if self.last is not None:
            usage = _openai.read("", self.last)
            if usage is not None and usage.model is None and first is not None:
                usage.model = _str(first.get("model"))
            return usage
        if first is not None:
            usage = _openai.read_usage(self.choice_usage) if self.choice_usage is not None else Usage()
            usage.model, usage.request_id = _str(first.get("model")), _str(first.get("id"))
            return usage
        return None


class ResponsesWire(WireReader):
    """Responses events: usage on `response.completed` / `incomplete` / `failed`."""

    __slots__ = ("response", "tools")

    def __init__(self) -> None:
        super().__init__()
        self.response: Mapping[str, Any] | None = None
        self.tools: list[Any] = []

    def text_only(self, data: bytes) -> bool:
        return (
            data.startswith(b'{"type":"response.output_text.delta"')
            and data.count(b'"type"') == 1
            and b"\\u00" not in data
        )

    def event(self, obj: Mapping[str, Any]) -> bool:
        kind = obj.get("type")
        if not isinstance(kind, str):
            return True
        if kind.endswith(".delta"):
            if self._pending:  # its text comes after the text kept unread
                self.catch_up()
            delta = obj.get("delta")
            if isinstance(delta, str) and kind != "response.audio.delta":
                self.add(delta)
        elif kind == "response.output_item.done":
            item = obj.get("item")
            if isinstance(item, Mapping) and item.get("type") in _openai._TOOL_KINDS:
                self.tools.append(item)
        elif kind in _openai._FINAL_EVENTS:
            self.response = _mapping(obj.get("response"))
            self.final = True
        elif kind == "response.created":
            self.response = _mapping(obj.get("response"))
        return True

    def usage(self) -> Usage | None:
        response = self.response
        if response is None:
            return None
        usage = _openai.read("responses", response) or Usage(
            model=_str(response.get("model")), request_id=_str(response.get("id"))
        )
        if not self.final and self.tools:
            usage.units = {**(usage.units or {}), **(_openai.tool_units(self.tools) or {})}
        return usage


class MessagesWire(WireReader):
    """Anthropic message events: input and cache counts on `message_start`, cumulative counts on
    each `message_delta` (the last one holds the totals)."""

    __slots__ = ("delta", "message")

    def __init__(self) -> None:
        super().__init__()
        self.message: Mapping[str, Any] | None = None
        self.delta: Any = None

    def text_only(self, data: bytes) -> bool:
        # the event's own type first, and one more `"type"` only: the delta's
        return (
            data.startswith(b'{"type":"content_block_delta"')
            and data.count(b'"type"') == 2
            and b"\\u00" not in data
        )

    def event(self, obj: Mapping[str, Any]) -> bool:
        kind = obj.get("type")
        if kind == "content_block_delta":
            if self._pending:  # its text comes after the text kept unread
                self.catch_up()
            delta = obj.get("delta")
            if isinstance(delta, Mapping):
                piece = delta.get("text") or delta.get("thinking") or delta.get("partial_json")
                if isinstance(piece, str):
                    self.add(piece)
        elif kind == "message_delta":
            self.delta = obj.get("usage")
            self.final = True
        elif kind == "message_start":
            self.message = _mapping(obj.get("message"))
        return True

    def usage(self) -> Usage | None:
        message = self.message
        if message is None:
            return None
        usage = _anthropic.read_usage(message.get("usage"), self.delta)
        if not self.final:  # message_start's output count is a placeholder
            delta = self.delta if isinstance(self.delta, Mapping) else {}
            usage.tokens["output_tokens"] = n(delta.get("output_tokens"))
        usage.model = _str(message.get("model"))
        usage.request_id = _str(message.get("id"))
        return usage


def reader_for(endpoint: str, hide: bool) -> WireReader:
    """A fresh stream reader for one stream of `endpoint` (`hide`: cut the injected usage chunk)."""
    if endpoint == "messages":
        return MessagesWire()
    if endpoint == "responses":
        return ResponsesWire()
    return ChatWire(hide)


_READERS: dict[str, Callable[[str, Any], Usage | None]] = {
    "messages": _anthropic.read,
}


def read_body(endpoint: str, raw: bytes) -> tuple[Usage | None, Any]:
    """(usage, parsed JSON) of a whole (non-stream) response body; (None, None) when it is not JSON."""
    try:
        obj = loads(raw)
    except ValueError:
        return None, None
    if not isinstance(obj, Mapping):
        return None, obj
    return _READERS.get(endpoint, _openai.read)(endpoint, obj), obj


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None
