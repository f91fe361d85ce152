"""An upper bound of a request's prompt tokens, from its JSON body (what a strict limit reserves).

For OpenAI models (a public tokenizer, `count.py`) the bound follows how the API builds the prompt:
each message costs its text's tokens plus a few framing tokens (3 per message and 3 to prime the
reply, documented by OpenAI; 4 and 3 are used here, so the bound stays above), tool and schema
definitions are counted as their JSON text (more tokens than the compact form the API renders), an
image costs at most `IMAGE_TOKENS_MAX` for its model. Within a few percent above the reported
`prompt_tokens` for realistic bodies (tests/test_tokens.py).

For every other model (no public tokenizer) the bound is the UTF-8 bytes of the whole body — byte-level
tokenizers never make more tokens than bytes — plus `TOOLS_OVERHEAD` when tools are defined (Anthropic
adds a hidden tool-use system prompt of a few hundred tokens).

A request whose prompt is stored at the provider (`previous_response_id`, `conversation`, a stored
`prompt` template) cannot be bounded from its body: its bound is the model's context window.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llmledger.errors import InvalidUsageError
from llmledger.tokens.count import count_tokens, encoding_for_model, upper_bound_tokens

__all__ = ["CONTEXT_MAX", "IMAGE_TOKENS_MAX", "TOOLS_OVERHEAD", "context_window", "prompt_tokens_bound"]

PER_MESSAGE = 4
REPLY_PRIMING = 3
PER_TOOL = 12
FUNCTION_INIT = 8
PROPERTIES_INIT = 4
PROPERTY_KEY = 4
ENUM_ITEM = 3
FUNCTIONS_END = 12
TOOLS_OVERHEAD = 1024
"""Added for non-OpenAI models when tools are defined (Anthropic's tool-use system prompt is <= ~500)."""
IMAGE_TOKENS_MAX = 6240
"""One image at most, any detail: 1536 patches x 2.46 (the dearest patch multiplier OpenAI lists,
gpt-4.1-nano) = 3779, and 85 + 170 x 8 tiles (gpt-4o, high detail) = 1445, rounded well up."""
IMAGE_TOKENS_MAX_4O_MINI = 2833 + 5667 * 8
"""gpt-4o-mini counts an image at 2833 + 5667 per 512-px tile (up to 8 tiles)."""
CONTEXT_MAX = 1_050_000
"""The largest context window among OpenAI models (gpt-4.1); unknown models use it."""
_CONTEXT = (
    ("gpt-4.1", 1_047_576),
    ("gpt-5", 400_000),
    ("gpt-4o", 128_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4", 200_000),
    ("gpt-4", 128_000),
    ("gpt-3.5", 16_385),
)
_PROMPT_KEYS = ("messages", "input", "prompt", "instructions", "system")
_SCHEMA_KEYS = ("tools", "functions", "response_format", "text", "tool_choice", "prediction")
_STORED = ("previous_response_id", "conversation")
_IMAGE_KEYS = frozenset(("image_url", "input_image", "image", "image_file"))
_SKIP_KEYS = frozenset(("type", "detail", "cache_control", "status"))
_FILE_KEYS = ("file_id", "file_url", "fileUri", "file_uri")
"""Keys naming a file held by the provider or at a URL (OpenAI file parts, Gemini `fileData`)."""
_CACHED_KEYS = ("cachedContent", "cached_content")
"""Gemini: a prompt prefix cached at the provider."""


def context_window(model: str | None) -> int:
    """The largest prompt `model` accepts, as far as llmledger knows (`CONTEXT_MAX` if unknown)."""
    name = (model or "").lower().rsplit("/", 1)[-1]
    for prefix, size in _CONTEXT:
        if name.startswith(prefix):
            return size
    return CONTEXT_MAX


def prompt_tokens_bound(body: Mapping[str, Any] | None, model: str | None, *, load: bool = True) -> int:
    """An upper bound of the prompt tokens the provider will count for this request body.

    `body` is the JSON request (OpenAI chat / Responses / completions / embeddings, Anthropic
    messages, Gemini generateContent). Never below the provider's count when the model's tokenizer
    is public (OpenAI) or byte-level (every other model here). `load=False`: if the tokenizer is
    not loaded yet, use the byte bound rather than load it on this thread (see `warm()`).
    """
    if not body:
        return 0
    if not isinstance(body, Mapping):
        raise InvalidUsageError(
            f"body must be the request's JSON object (a mapping), got {type(body).__name__}"
        )
    stored, images = _references(body, 0)
    if stored or any(body.get(k) for k in _STORED) or isinstance(body.get("prompt"), Mapping):
        return context_window(model)
    if encoding_for_model(model) is None or count_tokens("", model, load=load) is None:
        return _bytes_bound(body) + images * IMAGE_TOKENS_MAX
    assert model is not None
    return _Counter(model).body(body)


def _references(node: Any, depth: int) -> tuple[bool, int]:
    """(whether the request refers to content held elsewhere, images it refers to by URL or file id).
    Content held elsewhere — a file by id or URL (OpenAI `input_file` / `file` parts, Anthropic
    `document` sources of type url/file, Gemini `fileData`), Gemini `cachedContent` — has tokens the
    body cannot tell (a 100-page PDF is tens of thousands): the bound is then the context window,
    as for `previous_response_id`. An image by reference counts `IMAGE_TOKENS_MAX`."""
    if depth > 32:
        return False, 0
    if isinstance(node, Mapping):
        source = node.get("source")
        by_reference = isinstance(source, Mapping) and source.get("type") in ("url", "file")
        if node.get("type") in _IMAGE_KEYS or any(k in node for k in _IMAGE_KEYS):
            url = node.get("image_url")
            url = url.get("url") if isinstance(url, Mapping) else url
            if by_reference or node.get("file_id") or (isinstance(url, str) and not url.startswith("data:")):
                return False, 1  # an image the body does not carry: at most IMAGE_TOKENS_MAX
            return False, 0  # inline: its bytes are in the body
        if by_reference or any(node.get(k) for k in _FILE_KEYS) or any(node.get(k) for k in _CACHED_KEYS):
            return True, 0
        stored, images = False, 0
        for value in node.values():
            if isinstance(value, (Mapping, list, tuple)):
                inner, more = _references(value, depth + 1)
                stored, images = stored or inner, images + more
        return stored, images
    if isinstance(node, (list, tuple)):
        stored, images = False, 0
        for value in node:
            if isinstance(value, (Mapping, list, tuple)):
                inner, more = _references(value, depth + 1)
                stored, images = stored or inner, images + more
        return stored, images
    return False, 0


def _bytes_bound(body: Mapping[str, Any]) -> int:
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = repr(body)
    extra = TOOLS_OVERHEAD if body.get("tools") or body.get("functions") else 0
    return upper_bound_tokens(text) + extra


class _Counter:
    def __init__(self, model: str) -> None:
        self.model = model
        self.image = IMAGE_TOKENS_MAX_4O_MINI if "4o-mini" in model.lower() else IMAGE_TOKENS_MAX

    def text(self, value: str) -> int:
        counted = count_tokens(value, self.model)
        return upper_bound_tokens(value) if counted is None else counted

    def json(self, value: Any) -> int:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            text = repr(value)
        return self.text(text)

    def body(self, body: Mapping[str, Any]) -> int:
        total = REPLY_PRIMING
        for key in _PROMPT_KEYS:
            value = body.get(key)
            if value is None:
                continue
            if isinstance(value, str):
                total += PER_MESSAGE + self.text(value)
            elif isinstance(value, (list, tuple)):
                if value and all(isinstance(v, int) for v in value):  # token ids (completions/embeddings)
                    total += len(value)
                    continue
                for item in value:
                    total += PER_MESSAGE + self.leaves(item, 0)
            else:
                total += PER_MESSAGE + self.leaves(value, 0)
        for key in _SCHEMA_KEYS:
            value = body.get(key)
            if value is None or isinstance(value, str):
                continue
            if key in ("tools", "functions") and isinstance(value, (list, tuple)):
                total += FUNCTIONS_END + sum(self.tool(t) for t in value)
            else:
                total += self.json(value)
        return total

    def tool(self, tool: Any) -> int:
        """A function definition as the API renders it (name, description, one line per simple
        parameter; OpenAI's cookbook constants, each raised by one), a nested schema as its JSON."""
        spec = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            return PER_TOOL + self.json(tool)
        total = FUNCTION_INIT + self.text(f"{spec['name']}:{spec.get('description') or ''}")
        params = spec.get("parameters")
        if not isinstance(params, Mapping):
            return total
        props = params.get("properties")
        rest = {k: v for k, v in params.items() if k not in ("type", "properties", "required")}
        if rest:
            total += self.json(rest)
        if not isinstance(props, Mapping) or not props:
            return total
        total += PROPERTIES_INIT
        for name, prop in props.items():
            total += PROPERTY_KEY
            simple = isinstance(prop, Mapping) and set(prop) <= {"type", "description", "enum"}
            if not simple or not isinstance(prop.get("type", ""), str):
                total += self.text(str(name)) + self.json(prop)
                continue
            for item in prop.get("enum") or ():
                total += ENUM_ITEM + self.text(str(item))
            total += self.text(f"{name}:{prop.get('type', '')}:{prop.get('description') or ''}")
        return total

    def leaves(self, node: Any, depth: int) -> int:
        """Tokens of every string in a message (its role, texts, names, tool-call arguments)."""
        if depth > 32:
            return self.json(node)
        if isinstance(node, str):
            return self.text(node)
        if isinstance(node, Mapping):
            kind = node.get("type")
            if kind in _IMAGE_KEYS or any(k in node for k in _IMAGE_KEYS):
                return self.image
            total = 0
            for key, value in node.items():
                if key in _SKIP_KEYS:
                    continue
                if key in ("tool_calls", "function_call"):
                    total += PER_TOOL * (len(value) if isinstance(value, (list, tuple)) else 1)
                total += self.leaves(value, depth + 1)
            return total
        if isinstance(node, (list, tuple)):
            return sum(self.leaves(v, depth + 1) for v in node)
        if isinstance(node, int) and not isinstance(node, bool):
            return 1  # a token id (completions/embeddings batches: lists of token-id lists)
        if isinstance(node, (float, bool)) or node is None:
            return 0
        return self.text(str(node))
