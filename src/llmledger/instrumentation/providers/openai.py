"""OpenAI SDK (and every OpenAI-compatible provider reached through it): what to patch, where usage is.

Usage fields (event convention: input includes cache, output includes reasoning):
chat/completions `prompt_tokens` (+ `prompt_tokens_details.cached_tokens|cache_write_tokens|audio_tokens`),
`completion_tokens` (+ `completion_tokens_details.reasoning_tokens|audio_tokens`); Responses and
Images `input_tokens` / `output_tokens` with `*_tokens_details`; transcriptions `usage.type` tokens or
duration. DeepSeek's `prompt_cache_hit_tokens` and Moonshot's top-level `usage.cached_tokens` repeat
`cached_tokens` (used only when that is absent); OpenRouter's `usage.cost` is the billed amount;
Groq's `x_groq.usage` stands in for a missing top-level `usage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from llmledger.instrumentation.patching import Target
from llmledger.instrumentation.stainless import StainlessSpec
from llmledger.instrumentation.usage import KEEP_CHARS, Generated, Usage, fields, n

__all__ = ["SPEC", "endpoint", "read", "read_usage"]

_ENDPOINTS: dict[str, str] = {
    "/chat/completions": "chat.completions",
    "/responses": "responses",
    "/completions": "completions",
    "/embeddings": "embeddings",
    "/audio/transcriptions": "audio.transcriptions",
    "/audio/translations": "audio.translations",
    "/audio/speech": "audio.speech",
    "/images/generations": "images.generations",
    "/images/edits": "images.edits",
}
_FINAL_EVENTS = frozenset(("response.completed", "response.incomplete", "response.failed"))
_TOOL_KINDS = frozenset(("web_search_call", "file_search_call", "code_interpreter_call"))


def endpoint(url: str) -> str | None:
    """The billable endpoint a request path names (Azure prefixes deployments: match the tail)."""
    name = _ENDPOINTS.get(url)
    if name is not None:
        return name
    path = url.split("?", 1)[0].rstrip("/")
    for suffix, name in _ENDPOINTS.items():  # "/chat/completions" is tried before "/completions"
        if path.endswith(suffix):
            return name
    return None


_INPUT_DETAILS = (
    ("cached_tokens", "cache_read_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("audio_tokens", "input_audio_tokens"),
    ("image_tokens", "input_image_tokens"),
)
_OUTPUT_DETAILS = (
    ("reasoning_tokens", "reasoning_tokens"),
    ("audio_tokens", "output_audio_tokens"),
    ("image_tokens", "output_image_tokens"),
)


def _details(details: Any, table: tuple[tuple[str, str], ...], tokens: dict[str, int]) -> None:
    if details is not None:
        get = fields(details).get
        for attr, name in table:
            value = get(attr)
            if value:  # most details are 0 or absent: `n` only for a value that may count
                count = n(value)
                if count:
                    tokens[name] = count


def read_usage(u: Any, endpoint: str = "") -> Usage:
    """Token counts of one `usage` object (chat, Responses, Images or transcription shape)."""
    f = fields(u)
    get = f.get  # (the caller's thread: one bound lookup for the ~12 probes below)
    prompt = get("prompt_tokens")
    if prompt is not None:
        inp, out = n(prompt), n(get("completion_tokens"))
        in_d, out_d = get("prompt_tokens_details"), get("completion_tokens_details")
    else:
        inp, out = n(get("input_tokens")), n(get("output_tokens"))
        in_d = get("input_tokens_details") or get("input_token_details")
        out_d = get("output_tokens_details")
    tokens = {"input_tokens": inp, "output_tokens": out}
    units: dict[str, int | Decimal] | None = None
    if in_d is not None:
        _details(in_d, _INPUT_DETAILS, tokens)
    if "cache_read_tokens" not in tokens:
        # DeepSeek `prompt_cache_hit_tokens`, Moonshot's top-level `cached_tokens`: the same number
        # as `prompt_tokens_details.cached_tokens` (inside `prompt_tokens`), never counted twice
        hit = n(get("prompt_cache_hit_tokens")) or n(get("cached_tokens"))
        if hit:
            tokens["cache_read_tokens"] = hit
    if out_d is not None:
        _details(out_d, _OUTPUT_DETAILS, tokens)
    if out and endpoint.startswith("images") and "output_image_tokens" not in tokens:
        tokens["output_image_tokens"] = out  # gpt-image: the output is the image
    if get("type") == "duration":
        seconds = _decimal(get("seconds"))
        if seconds is not None:
            units = {"audio_seconds": seconds}
    usage = Usage(tokens, None, None, None, None, units, False, n(get("total_tokens")))
    ticks = get("cost_in_usd_ticks")  # xAI: the billed cost in 1e-10 USD
    if ticks is not None:
        billed = _decimal(ticks)
        usage.provider_cost = None if billed is None else billed.scaleb(-10)
    elif get("cost") is not None:
        usage.provider_cost = _provider_cost(f)
    return usage


def _provider_cost(f: Mapping[str, Any]) -> Decimal | None:
    """OpenRouter's `usage.cost` is its own charge; with `is_byok` the inference billed to the
    user's key is `cost_details.upstream_inference_cost`, so the call's cost is their sum.
    Perplexity's `usage.cost` is an object whose `total_cost` is the whole."""
    cost = f.get("cost")
    if isinstance(cost, Mapping):
        return _decimal(cost.get("total_cost"))
    billed = _decimal(cost)
    if billed is not None and f.get("is_byok") is True:
        upstream = _decimal(fields(f.get("cost_details")).get("upstream_inference_cost"))
        if upstream is None:
            return None  # BYOK without the upstream figure: the charge is not the whole cost
        billed += upstream
    return billed


_TOOL_ITEMS = {
    "web_search_call": "web_searches",
    "file_search_call": "storage_searches",
}


def tool_units(output: Any) -> dict[str, int | Decimal] | None:
    """Per-call tool fees in a Responses `output` list: web searches, file searches, and
    code-interpreter containers (billed once per container, as `code_executions`)."""
    if not output:
        return None
    counts: dict[str, int | Decimal] = {}
    containers = set()
    for item in output:
        f = fields(item)
        kind = f.get("type")
        unit = _TOOL_ITEMS.get(kind) if isinstance(kind, str) else None
        if unit is not None:
            counts[unit] = int(counts.get(unit, 0)) + 1
        elif kind == "code_interpreter_call":
            containers.add(f.get("container_id"))
    if containers:
        counts["code_executions"] = len(containers)
    return counts or None


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return None
    try:
        dec = Decimal(str(value))
    except InvalidOperation:
        return None
    return dec if dec.is_finite() and dec >= 0 else None


def _groq_usage(extra: Mapping[str, Any] | None) -> Any:
    """Groq's own usage object (`x_groq.usage`), which older Groq responses and streams carry
    instead of a top-level `usage`; None when absent."""
    if not extra:
        return None
    groq = extra.get("x_groq")
    return fields(groq).get("usage") if groq is not None else None


def read(endpoint: str, response: Any) -> Usage | None:
    """Usage of a parsed response, or None when it carries none (speech, dall-e, text transcripts).
    The top-level `usage` wins; Groq's `x_groq.usage` is read when it is the only one."""
    f = fields(response)
    u = f.get("usage")
    if u is None:
        u = _groq_usage(f)
        if u is None:
            return None
    usage = read_usage(u, endpoint)
    model, rid, tier = f.get("model"), f.get("id"), f.get("service_tier")
    usage.model = model if isinstance(model, str) and model else None
    usage.request_id = rid if isinstance(rid, str) else None
    usage.service_tier = tier if isinstance(tier, str) else None
    if endpoint == "responses":
        tools = tool_units(f.get("output"))
    else:  # chat search models (`gpt-4o-search-preview`...) search once per request, unreported
        tools = {"web_searches": 1} if usage.model is not None and "-search-" in usage.model else None
    if tools:
        usage.units = {**(usage.units or {}), **tools}
    return usage


class _ChatStream(Generated):
    """chat.completions / completions chunks: usage rides on the last chunk (with `include_usage`),
    or — at Moonshot — inside the last choice (`choices[0].usage`, beside its `finish_reason`), or —
    at Groq before `include_usage` — in the last chunk's `x_groq.usage`. A top-level `usage` wins."""

    __slots__ = ("choice_usage", "final", "first", "hide", "last")

    def __init__(self, hide: bool) -> None:
        super().__init__()  # what was generated: counted, and kept under a cap (no chunk is kept)
        self.hide = hide
        self.final = False
        self.first: Any = None
        self.last: Any = None
        self.choice_usage: Any = None

    def chunk(self, item: Any) -> bool:
        if item.usage is not None:
            self.last = item
            self.final = True
            return not (self.hide and not item.choices)
        if self.first is None:
            self.first = item
        if not item.choices:  # a chunk without choices may carry Groq's usage (`x_groq`)
            self._host_usage(item)
        for choice in item.choices:  # declared fields: read the instance dict directly (hot path)
            declared = choice.__dict__
            if declared.get("finish_reason") is not None:
                inside = choice.__pydantic_extra__.get("usage") if choice.__pydantic_extra__ else None
                if inside is not None:
                    self.choice_usage, self.final = inside, True
                else:
                    self._host_usage(item)
            delta = declared.get("delta")
            if delta is None:  # legacy completions
                piece = declared.get("text")
                if piece:
                    self.add(piece)
                continue
            d = delta.__dict__
            piece = d.get("content")
            if piece:  # the common case, inlined
                if self.chars < KEEP_CHARS:
                    self.pieces.append(piece)
                self.chars += len(piece)
            extra = delta.__pydantic_extra__
            if extra or d.get("refusal") or d.get("tool_calls") or d.get("function_call"):
                for other in _generated(d, extra):
                    self.add(other)
        return True

    def _host_usage(self, item: Any) -> None:
        inside = _groq_usage(item.__pydantic_extra__)
        if inside is not None:
            self.choice_usage, self.final = inside, True

    def usage(self) -> Usage | None:
        if self.last is not None:
            usage = read("", self.last)
            if usage is not None and usage.model is None and self.first is not None:
                usage.model = self.first.model
            return usage
        if self.first is not None:
            usage = read_usage(self.choice_usage) if self.choice_usage is not None else Usage()
            usage.model, usage.request_id = self.first.model, self.first.id
            return usage
        return None


def _generated(d: Mapping[str, Any], extra: Mapping[str, Any] | None) -> list[str]:
    """What a chat delta generated besides `content`: reasoning (`reasoning_content`, `reasoning`),
    refusals and tool-call / function-call arguments."""
    out: list[str] = []
    refusal = d.get("refusal")
    if isinstance(refusal, str):
        out.append(refusal)
    for call in d.get("tool_calls") or ():
        function = fields(call).get("function")
        arguments = fields(function).get("arguments") if function is not None else None
        if isinstance(arguments, str):
            out.append(arguments)
    legacy = d.get("function_call")
    if legacy is not None:
        arguments = fields(legacy).get("arguments")
        if isinstance(arguments, str):
            out.append(arguments)
    if extra:
        for name in ("reasoning_content", "reasoning"):
            text = extra.get(name)
            if isinstance(text, str):
                out.append(text)
    return out


class _ResponsesStream(Generated):
    """Responses events: usage arrives on `response.completed` / `incomplete` / `failed`."""

    __slots__ = ("final", "response", "tools")

    def __init__(self) -> None:
        super().__init__()
        self.final = False
        self.response: Any = None
        self.tools: list[Any] = []  # tool-call items seen done, for a stream cut before the end

    def chunk(self, item: Any) -> bool:
        kind = item.type
        if kind.endswith(".delta"):  # text, reasoning, summaries, refusals, tool-call arguments
            delta = item.__dict__.get("delta")
            if isinstance(delta, str) and kind != "response.audio.delta":
                self.add(delta)
        elif kind == "response.output_item.done":
            if fields(item.item).get("type") in _TOOL_KINDS:
                self.tools.append(item.item)
        elif kind in _FINAL_EVENTS:
            self.response = item.response
            self.final = True
        elif kind == "response.created":
            self.response = item.response
        return True

    def usage(self) -> Usage | None:
        if self.response is None:
            return None
        usage = read("responses", self.response) or Usage(
            model=self.response.model, request_id=self.response.id
        )
        if not self.final and self.tools:
            usage.units = {**(usage.units or {}), **(tool_units(self.tools) or {})}
        return usage


def stream_reader(endpoint: str, hide: bool) -> Any:
    """A fresh reader for one stream of `endpoint`."""
    return _ResponsesStream() if endpoint == "responses" else _ChatStream(hide)


def prepare(endpoint: str, body: Mapping[str, Any], asks_usage: bool = True) -> Mapping[str, Any] | None:
    """Ask a chat/completions stream for usage (`stream_options.include_usage`) if it did not —
    only at a host known to accept the option (`asks_usage`): a relay that does not know it may
    refuse the whole request, and metering must never change whether a call succeeds."""
    if endpoint not in ("chat.completions", "completions") or not asks_usage:
        return None
    options = body.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage") is True:
        return None
    return {
        **body,
        "stream_options": {**(options if isinstance(options, Mapping) else {}), "include_usage": True},
    }


def _methods() -> tuple[Target, ...]:
    res = "openai.resources."
    table = {
        "chat.completions.completions": (("Completions", "AsyncCompletions"), ("create", "parse", "stream")),
        "responses.responses": (("Responses", "AsyncResponses"), ("create", "parse", "stream")),
        "completions": (("Completions", "AsyncCompletions"), ("create",)),
        "embeddings": (("Embeddings", "AsyncEmbeddings"), ("create",)),
        "audio.transcriptions": (("Transcriptions", "AsyncTranscriptions"), ("create",)),
        "audio.translations": (("Translations", "AsyncTranslations"), ("create",)),
        "audio.speech": (("Speech", "AsyncSpeech"), ("create",)),
        "images": (("Images", "AsyncImages"), ("generate", "edit")),
    }
    return tuple(
        Target(res + module, cls, attr)
        for module, (classes, attrs) in table.items()
        for cls in classes
        for attr in attrs
    )


_STREAMS = "openai.lib.streaming."

SPEC = StainlessSpec(
    family="openai",
    module="openai",
    endpoint=endpoint,
    read=read,
    stream_reader=stream_reader,
    prepare=prepare,
    client_providers={"AzureOpenAI": "azure", "AsyncAzureOpenAI": "azure"},
    responses=(
        "openai._legacy_response.LegacyAPIResponse",
        "openai._response.APIResponse",
        "openai._response.AsyncAPIResponse",
    ),
    closers=(
        Target(_STREAMS + "chat._completions", "ChatCompletionStream", "close"),
        Target(_STREAMS + "chat._completions", "AsyncChatCompletionStream", "close"),
        Target(_STREAMS + "responses._responses", "ResponseStream", "close"),
        Target(_STREAMS + "responses._responses", "AsyncResponseStream", "close"),
    ),
    methods=_methods(),
)
