"""Anthropic SDK (and its Bedrock / Vertex / Foundry clients): what to patch, where usage is.

`usage.input_tokens` EXCLUDES both cache pools, so the event's input is input + cache reads + cache
writes; `cache_creation.ephemeral_5m/1h_input_tokens` split the writes by TTL (1h costs more).
Streams: `message_start` carries input and cache counts with a placeholder output; each
`message_delta` carries CUMULATIVE counts — the last one replaces, never adds.
"""

from __future__ import annotations

from typing import Any

from llmledger.instrumentation.patching import Target
from llmledger.instrumentation.stainless import StainlessSpec
from llmledger.instrumentation.usage import Generated, Usage, fields, get, n

__all__ = ["SPEC", "endpoint", "read", "read_usage"]

_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def endpoint(url: str) -> str | None:
    """`messages` for message creation (beta too); None for count_tokens, batches, models..."""
    return "messages" if url.split("?", 1)[0].rstrip("/").endswith("/v1/messages") else None


def read_usage(u: Any, delta: Any = None) -> Usage:
    """Token counts from a `usage` object; `delta` (a stream's last `message_delta` usage) wins per field."""

    base, last = fields(u), fields(delta)

    def pick(name: str) -> Any:
        value = last.get(name)
        return base.get(name) if value is None else value

    uncached, out = n(pick("input_tokens")), n(pick("output_tokens"))
    read, write = n(pick("cache_read_input_tokens")), n(pick("cache_creation_input_tokens"))
    tokens = {"input_tokens": uncached + read + write, "output_tokens": out}
    if read:
        tokens["cache_read_tokens"] = read
    if write:
        tokens["cache_write_tokens"] = write
        split = pick("cache_creation")
        one_hour = n(get(split, "ephemeral_1h_input_tokens")) if split is not None else 0
        if one_hour:
            tokens["cache_write_1h_tokens"] = one_hour  # more than the writes: normalise() notes it
    usage = Usage(tokens)
    tools = pick("server_tool_use")
    searches = n(get(tools, "web_search_requests")) if tools is not None else 0
    if searches:
        usage.units = {"web_searches": searches}
    tier = get(u, "service_tier") if u is not None else None
    usage.service_tier = (
        tier if isinstance(tier, str) and tier else None
    )  # as reported: standard, priority, batch
    return usage


def read(endpoint: str, response: Any) -> Usage | None:
    """Usage of a parsed `Message`, or None when it carries none."""
    u = get(response, "usage")
    if u is None:
        return None
    usage = read_usage(u)
    model = get(response, "model")
    usage.model = model if isinstance(model, str) and model else None
    rid = get(response, "id")
    usage.request_id = rid if isinstance(rid, str) else None
    return usage


class _MessageStream(Generated):
    """Raw message stream events (also what the `messages.stream()` helper reads)."""

    __slots__ = ("delta", "final", "message")

    def __init__(self) -> None:
        super().__init__()
        self.final = False
        self.message: Any = None
        self.delta: Any = None

    def chunk(self, item: Any) -> bool:
        kind = item.type
        if kind == "content_block_delta":  # text, thinking and tool-input JSON are all generated
            delta = fields(item.delta)
            piece = delta.get("text") or delta.get("thinking") or delta.get("partial_json")
            if isinstance(piece, str):
                self.add(piece)
        elif kind == "message_delta":  # cumulative: the last one holds the final counts
            self.delta = item.usage
            self.final = True
        elif kind == "message_start":
            self.message = item.message
        return True

    def usage(self) -> Usage | None:
        if self.message is None:
            return None
        usage = read_usage(self.message.usage, self.delta)
        if not self.final:  # message_start's output count is a placeholder
            usage.tokens["output_tokens"] = n(get(self.delta, "output_tokens"))
        usage.model = self.message.model
        usage.request_id = self.message.id
        return usage


def stream_reader(endpoint: str, hide: bool) -> Any:
    """A fresh reader for one message stream."""
    return _MessageStream()


def _methods() -> tuple[Target, ...]:
    return tuple(
        Target(module, cls, attr)
        for module in ("anthropic.resources.messages.messages", "anthropic.resources.beta.messages.messages")
        for cls in ("Messages", "AsyncMessages")
        for attr in ("create", "stream", "parse")
    )


SPEC = StainlessSpec(
    family="anthropic",
    module="anthropic",
    endpoint=endpoint,
    read=read,
    stream_reader=stream_reader,
    client_providers={
        "AnthropicBedrock": "aws-bedrock",
        "AsyncAnthropicBedrock": "aws-bedrock",
        "AnthropicBedrockMantle": "aws-bedrock",
        "AsyncAnthropicBedrockMantle": "aws-bedrock",
        "AnthropicAWS": "aws-bedrock",
        "AsyncAnthropicAWS": "aws-bedrock",
        "AnthropicVertex": "anthropic-vertex",
        "AsyncAnthropicVertex": "anthropic-vertex",
        "AnthropicFoundry": "azure",
        "AsyncAnthropicFoundry": "azure",
    },
    responses=("anthropic._response.APIResponse", "anthropic._response.AsyncAPIResponse"),
    methods=_methods(),
)
