"""Response bodies and SSE streams shaped like the providers' own (field order, nulls, event names)."""

from __future__ import annotations

import json
from typing import Any

CHAT_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 256,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

RESPONSES_USAGE = {
    "input_tokens": 2000,
    "input_tokens_details": {"cached_tokens": 1536},
    "output_tokens": 500,
    "output_tokens_details": {"reasoning_tokens": 384},
    "total_tokens": 2500,
}

ANTHROPIC_USAGE = {
    "input_tokens": 25,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 4000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "output_tokens": 180,
    "service_tier": "standard",
}

GEMINI_USAGE = {
    "promptTokenCount": 1500,
    "candidatesTokenCount": 120,
    "totalTokenCount": 1920,
    "cachedContentTokenCount": 1024,
    "promptTokensDetails": [
        {"modality": "TEXT", "tokenCount": 1300},
        {"modality": "AUDIO", "tokenCount": 200},
    ],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1024}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 120}],
    "thoughtsTokenCount": 300,
}

TEXT = ["Hello", " there", ",", " how", " can", " I", " help", "?"]


def sse(events: list[tuple[str | None, Any]], crlf: bool = False) -> bytes:
    """Encode `(event name or None, data)` pairs as a server-sent event stream."""
    nl = "\r\n" if crlf else "\n"
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        head = f"event: {name}{nl}" if name else ""
        out.append(f"{head}data: {payload}{nl}{nl}")
    return "".join(out).encode()


# -- OpenAI -------------------------------------------------------------------------------------


def chat_completion(model: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-AbC123",
        "object": "chat.completion",
        "created": 1731000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(TEXT),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage or CHAT_USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_4f2a1b",
    }


def chat_stream(
    model: str, include_usage: bool, usage: dict[str, Any] | None = None, cut: int | None = None
) -> bytes:
    """A chat.completion.chunk stream; with `include_usage` every chunk has `usage: null` and a final
    `choices: []` chunk carries the usage. `cut` stops after that many chunks (no [DONE])."""

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "chatcmpl-StR456",
            "object": "chat.completion.chunk",
            "created": 1731000000,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_4f2a1b",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = None
        return body

    events: list[tuple[str | None, Any]] = [
        (None, chunk({"role": "assistant", "content": "", "refusal": None}, None))
    ]
    events += [(None, chunk({"content": piece}, None)) for piece in TEXT]
    events.append((None, chunk({}, "stop")))
    if include_usage:
        final = chunk({}, None)
        final["choices"] = []
        final["usage"] = usage or CHAT_USAGE
        events.append((None, final))
    if cut is not None:
        return sse(events[:cut])
    events.append((None, "[DONE]"))
    return sse(events)


def response_object(
    model: str, status: str = "completed", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    done = status != "in_progress"
    return {
        "id": "resp_67ccd2bed1ec8190",
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "id": "msg_67ccd2bf17f0",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "".join(TEXT), "annotations": []}],
            },
        ]
        if done
        else [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium", "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": (usage or RESPONSES_USAGE) if done else None,
        "user": None,
        "metadata": {},
    }


def responses_stream(model: str, cut: int | None = None) -> bytes:
    events: list[tuple[str | None, Any]] = [
        (
            "response.created",
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": response_object(model, "in_progress"),
            },
        ),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": 1,
                "output_index": 0,
                "item": {"type": "reasoning", "id": "rs_1", "summary": []},
            },
        ),
        (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "sequence_number": 1,
                "output_index": 0,
                "item": {"type": "reasoning", "id": "rs_1", "summary": []},
            },
        ),
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": 1,
                "output_index": 1,
                "item": {
                    "type": "message",
                    "id": "msg_67ccd2bf17f0",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            },
        ),
        (
            "response.content_part.added",
            {
                "type": "response.content_part.added",
                "sequence_number": 2,
                "item_id": "msg_67ccd2bf17f0",
                "output_index": 1,
                "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []},
            },
        ),
    ]
    for i, piece in enumerate(TEXT):
        events.append(
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "sequence_number": i + 1,
                    "item_id": "msg_67ccd2bf17f0",
                    "output_index": 1,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                },
            )
        )
    events.append(
        (
            "response.completed",
            {"type": "response.completed", "sequence_number": 99, "response": response_object(model)},
        )
    )
    return sse(events[:cut] if cut is not None else events)


def error_body(status: int) -> dict[str, Any]:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        429: "rate_limit_error",
        500: "server_error",
    }
    return {
        "error": {
            "message": f"fake {status}",
            "type": kinds.get(status, "api_error"),
            "param": None,
            "code": None,
        }
    }


# -- Anthropic ----------------------------------------------------------------------------------


def message(model: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(TEXT)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage or ANTHROPIC_USAGE,
    }


def message_stream(model: str, usage: dict[str, Any] | None = None, cut: int | None = None) -> bytes:
    u = dict(usage or ANTHROPIC_USAGE)
    start = {**u, "output_tokens": 1}
    msg = {**message(model, start), "content": [], "stop_reason": None}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": msg}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
    ]
    for piece in TEXT:
        events.append(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
        )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    delta_usage = {
        k: u[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    }
    delta_usage["output_tokens"] = u["output_tokens"]
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return sse(events[:cut] if cut is not None else events)


def anthropic_error(status: int) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}
    return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": f"fake {status}"}}


# -- Gemini -------------------------------------------------------------------------------------


def gemini_response(
    model: str, usage: dict[str, Any] | None = None, text: str = "".join(TEXT)
) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": usage or GEMINI_USAGE,
        "modelVersion": model,
        "responseId": "mQ5HaZ-xBKqn1MkPz9nQ8Qc",
    }


def gemini_stream(model: str, cut: int | None = None) -> bytes:
    """`streamGenerateContent?alt=sse`: every chunk carries RUNNING usage totals."""
    u = GEMINI_USAGE
    events: list[tuple[str | None, Any]] = []
    for i, piece in enumerate(TEXT):
        last = i == len(TEXT) - 1
        running = {
            "promptTokenCount": u["promptTokenCount"],
            "candidatesTokenCount": u["candidatesTokenCount"] if last else 10 * (i + 1),
            "totalTokenCount": u["totalTokenCount"] if last else u["promptTokenCount"] + 10 * (i + 1),
            "cachedContentTokenCount": u["cachedContentTokenCount"],
            "promptTokensDetails": u["promptTokensDetails"],
            "cacheTokensDetails": u["cacheTokensDetails"],
            "thoughtsTokenCount": u["thoughtsTokenCount"],
        }
        candidate: dict[str, Any] = {"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}
        if last:
            candidate["finishReason"] = "STOP"
        events.append(
            (
                None,
                {
                    "candidates": [candidate],
                    "usageMetadata": running,
                    "modelVersion": model,
                    "responseId": "strm1",
                },
            )
        )
    return sse(events[:cut] if cut is not None else events, crlf=True)


def gemini_error(status: int) -> dict[str, Any]:
    names = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}
    return {"error": {"code": status, "message": f"fake {status}", "status": names.get(status, "UNKNOWN")}}
