"""The gateway's stream readers keep text-only events unread (a byte search) and read them only
when the text is wanted: what they report must be what reading every event reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmledger.gateway.wire import PENDING_BYTES, WireReader, loads, reader_for


def data(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def chat(delta: dict[str, Any], finish: str | None = None, usage: Any = None, choices: bool = True) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return data({"id": "c1", "model": "gpt-4o-mini", "choices": [choice] if choices else [], "usage": usage})


USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def feed(reader: WireReader, events: list[bytes], defer: bool) -> tuple[list[bool], int]:
    """(what the client sees of each event, how many were kept unread)"""
    shown, kept = [], 0
    for event in events:
        if defer and reader.defer(event):
            shown.append(True)
            kept += 1
        else:
            shown.append(reader.event(loads(event)))
    return shown, kept


def both(endpoint: str, events: list[bytes], hide: bool = False) -> tuple[WireReader, WireReader, int]:
    eager, lazy = reader_for(endpoint, hide), reader_for(endpoint, hide)
    shown_eager, _ = feed(eager, events, False)
    shown_lazy, kept = feed(lazy, events, True)
    assert shown_lazy == shown_eager
    assert lazy.final == eager.final
    lazy_usage, eager_usage = lazy.usage(), eager.usage()
    assert (lazy_usage and lazy_usage.tokens) == (eager_usage and eager_usage.tokens)
    lazy.catch_up()
    assert (lazy.text(), lazy.chars) == (eager.text(), eager.chars)
    return eager, lazy, kept


def test_chat_text_chunks_are_kept_unread_and_read_the_same_when_wanted() -> None:
    events = [
        chat({"role": "assistant", "content": ""}),
        *(chat({"content": f" w{i}"}) for i in range(20)),
        chat({}, "stop"),
        chat({}, None, USAGE, choices=False),
    ]
    _, lazy, kept = both("chat.completions", events, hide=True)
    assert kept == 21  # all but the first (its model and id) and the usage chunk
    assert lazy.text().startswith(" w0 w1")


@pytest.mark.parametrize(
    "chunk",
    [
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],'
        b'"usage" : {"prompt_tokens":1}}',
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop",'
        b'"usage":{"prompt_tokens":1}}]}',
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],'
        b'"\\u0075sage":{"prompt_tokens":1}}',
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"x"}}],"usage"\n:\n{"prompt_tokens":1}}',
    ],
)
def test_a_chat_chunk_with_usage_in_any_spelling_is_read_at_once(chunk: bytes) -> None:
    reader = reader_for("chat.completions", False)
    reader.event(loads(chat({"role": "assistant", "content": ""})))
    assert not reader.defer(chunk)
    assert reader.event(loads(chunk)) and reader.final  # its usage is read


def test_text_read_at_once_after_text_kept_unread_stays_in_order() -> None:
    events = [
        chat({"role": "assistant", "content": ""}),
        chat({"content": "one "}),
        chat({"content": "two "}),
        # an escape: read at once, after the two kept unread
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"thr\\u00e9e"}}],"usage" :null}',
    ]
    _, lazy, kept = both("chat.completions", events)
    assert kept == 2 and lazy.text() == "one two thr\u00e9e"


def test_a_stream_without_usage_is_estimated_from_the_same_text() -> None:
    events = [chat({"role": "assistant", "content": ""}), *(chat({"content": "é"}) for _ in range(5))]
    eager, lazy, _ = both("chat.completions", events)
    assert not lazy.final and lazy.text() == "ééééé" == eager.text()


def test_text_kept_unread_is_read_past_its_memory_bound() -> None:
    reader = reader_for("chat.completions", False)
    reader.event(loads(chat({"role": "assistant", "content": ""})))
    piece = chat({"content": "x" * 1000})
    for _ in range(PENDING_BYTES // len(piece) + 2):
        assert reader.defer(piece)
    assert reader.chars >= PENDING_BYTES // len(piece) * 1000  # read on the way: memory bounded


def test_anthropic_and_responses_text_events_are_kept_unread_and_read_the_same() -> None:
    messages = [
        data(
            {
                "type": "message_start",
                "message": {
                    "id": "m1",
                    "model": "claude-x",
                    "usage": {"input_tokens": 9, "output_tokens": 1},
                },
            }
        ),
        data({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        *(
            data(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"t{i} "}}
            )
            for i in range(5)
        ),
        data({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "type"}}),
        data({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
    ]
    _, lazy, kept = both("messages", messages)
    assert kept == 5 and lazy.text().endswith("t4 type")
    responses = [
        data({"type": "response.created", "response": {"id": "r1", "model": "gpt-4o"}}),
        *(data({"type": "response.output_text.delta", "item_id": "i", "delta": f"d{i}"}) for i in range(4)),
        data(
            {
                "type": "response.completed",
                "response": {"id": "r1", "model": "gpt-4o", "usage": {"input_tokens": 3, "output_tokens": 4}},
            }
        ),
    ]
    _, lazy, kept = both("responses", responses)
    assert kept == 4 and lazy.text() == "d0d1d2d3"
