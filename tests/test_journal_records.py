"""The journal records the caller's thread writes from cached templates (`sdk/records.py`) are the
same bytes as the field-by-field formatting, for every shape a call can end with; and the writer is
woken once per cycle, not once per call, while it works through a backlog."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from llmledger.attribution.context import EMPTY, Attribution
from llmledger.instrumentation.call import Call
from llmledger.instrumentation.usage import Usage
from llmledger.sdk import records as spool
from llmledger.transport import BackgroundWriter


def _call(model: str | None = "gpt-4o-mini", who: Attribution = EMPTY) -> Call:
    call = Call("openai", "chat.completions", model, who, None)
    call.seq = 41
    return call


SHAPES: list[tuple[Usage, tuple[Any, ...], float, float | None]] = [
    (Usage({"input_tokens": 12, "output_tokens": 5}, model="gpt-4o-mini-2024-07-18", total=17),
     (True, False, "ok", None, None, None), 0.25, None),
    (Usage({"input_tokens": 1200, "output_tokens": 100, "cache_read_tokens": 1024}, model="m%s%d",
           request_id="chatcmpl-%d \"x\" é", service_tier="default", total=1300),
     (True, True, "ok", None, None, None), 1.234567891, 0.0123456),
    (Usage({"input_tokens": 3}, model=None, estimated=True, provider_cost=Decimal("0.00012")),
     (False, True, "error", "APIError", None, None), 2.5, 0.5),
    (Usage(), (False, False, "error", "Timeout%", Decimal(0), None), 0.0, None),
    (Usage(estimated=True), (False, False, "ok", None, None, "never parsed: 100%"), 3e-7, None),
]  # fmt: skip


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_the_end_record_template_gives_the_same_bytes_as_the_field_by_field_format(shape: int) -> None:
    usage, outcome, duration, ttft = SHAPES[shape]
    for _ in range(2):  # the first builds the template, the second reuses it
        call = _call()
        call.usage, call.outcome, call.duration = usage, outcome, duration
        call.ttft = None if ttft is None else call.t0 + ttft
        record = spool.end_record_of(call)
        assert record == spool._end_record_text(call)
        fields = spool.end_fields(call)
        parsed = json.loads(record[1:])
        assert parsed[6] == pytest.approx(fields[6], abs=1e-6)
        assert parsed[:4] == fields[:4] and parsed[8:] == fields[8:]
        assert parsed[4] == (None if fields[4] is None else str(fields[4]))


def test_an_odd_end_record_goes_through_the_slow_path() -> None:
    call = _call()
    call.usage = Usage({"input_tokens": 2}, units={"audio_seconds": Decimal("1.5")})
    call.outcome = (True, False, "ok", None, None, None)
    call.duration = 0.1
    assert json.loads(spool.end_record_of(call)[1:])[3] == {"audio_seconds": "1.5"}
    call.usage = Usage({"input_tokens": 2})
    call.duration, call.ttft = 0.1, call.t0 - 1.0  # a clock that went back: repr, not the template
    assert spool.end_record_of(call) == spool._end_record_text(call)


def test_the_begin_record_template_follows_the_call_it_is_given() -> None:
    tagged = Attribution("t%s", "u", None, None, None, None, {"k": "100%"})
    calls = [(EMPTY, "gpt-4o"), (tagged, "gpt-4o"), (tagged, "gpt-4o"), (EMPTY, "m%d"), (tagged, None)]
    for who, model in calls:
        call = _call(model, who)
        got = spool.begin_record(call, 9, 1_700_000_000_000_000)
        assert json.loads(got[1:]) == [
            9,
            1_700_000_000_000_000,
            "openai",
            "chat.completions",
            model,
            None if who is EMPTY else spool._who_list(who),
            None,
        ]
    call = _call()
    call.reservation = "res-1"  # a reserved call: its id in the record, never a template's null
    assert json.loads(spool.begin_record(call, 3, 5)[1:])[6] == "res-1"


def test_a_backlog_wakes_the_writer_once_per_cycle_not_once_per_call() -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(batch: Sequence[int]) -> None:
        entered.set()
        release.wait(10)

    writer: BackgroundWriter[int] = BackgroundWriter(slow, batch_size=10, flush_interval=60)
    sets = 0
    original = writer._wake.set

    def counting() -> None:
        nonlocal sets
        sets += 1
        original()

    writer._wake.set = counting  # type: ignore[method-assign]
    for i in range(11):
        writer.submit(i)
    assert entered.wait(10)  # the writer holds a batch; the backlog grows behind it
    sets = 0
    for i in range(1000):
        writer.submit(i)
    assert sets <= 1
    release.set()
    assert writer.close(10)
    assert writer.counters.written == 1011
