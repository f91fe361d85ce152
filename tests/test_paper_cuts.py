"""Small things a newcomer trips over: log reasons, durations, amounts, query validation, switches."""

from __future__ import annotations

import gc
import logging
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.fakes.server import Fake

import llmledger
from llmledger._time import parse_time_bound
from llmledger.cli.render import money
from llmledger.events import UsageEvent

MSGS: Any = [{"role": "user", "content": "hi"}]


def test_an_unread_raw_response_is_not_logged_as_a_missing_price(
    recorded: list[UsageEvent], caplog: pytest.LogCaptureFixture
) -> None:
    fake = Fake()
    client = openai.OpenAI(
        api_key="k", base_url="https://api.deepseek.com/v1", http_client=fake.client(), max_retries=0
    )
    with caplog.at_level(logging.WARNING, logger="llmledger"):
        raw = client.chat.completions.with_raw_response.create(model="deepseek-chat", messages=MSGS)
        del raw
        gc.collect()
        llmledger.flush()
    [event] = recorded
    assert event.cost_usd is None and "never parsed" in (event.unpriced_reason or "")
    text = caplog.text
    assert "no price for" not in text and "usage of a deepseek/deepseek-chat call is unknown" in text
    assert llmledger.stats().unpriced_models == {"deepseek/deepseek-chat (usage unknown)": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mtd", datetime(2026, 3, 1, tzinfo=timezone.utc)),
        ("ytd", datetime(2026, 1, 1, tzinfo=timezone.utc)),
        ("1y", datetime(2025, 3, 14, 12, tzinfo=timezone.utc)),
        ("2w", datetime(2026, 2, 28, 12, tzinfo=timezone.utc)),
    ],
)
def test_durations(text: str, expected: datetime) -> None:
    now = datetime(2026, 3, 14, 12, tzinfo=timezone.utc)
    assert parse_time_bound(text, now=now) == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("1E-7"), "$0.0000001"),
        (Decimal("0.0105"), "$0.0105"),
        (Decimal("0.5"), "$0.50"),
        (Decimal(0), "$0.00"),
        (Decimal("1234.5678"), "$1,234.57"),
        (None, "unpriced"),
    ],
)
def test_amounts_never_use_an_exponent(value: Decimal | None, shown: str) -> None:
    assert money(value) == shown


def test_queries_reject_bogus_values(ledger: Any) -> None:
    with pytest.raises(llmledger.InvalidQueryError, match="status filter takes"):
        llmledger.events(status="bogus")
    with pytest.raises(llmledger.InvalidQueryError, match="group_by needs"):
        llmledger.usage("")
    with pytest.raises(llmledger.InvalidQueryError, match="group_by needs"):
        llmledger.usage(["tenant", ""])


def test_day_groups_come_in_date_order(ledger: Any) -> None:
    for day, tokens in ((3, 10), (1, 1_000_000), (2, 5)):
        llmledger.track(
            provider="openai",
            model="gpt-4o",
            input_tokens=tokens,
            timestamp=datetime(2026, 1, day, tzinfo=timezone.utc),
        )
    assert [r.day for r in llmledger.usage("day")] == ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_set_limit_with_tags_as_text_is_a_typed_error(ledger: Any) -> None:
    with pytest.raises(llmledger.LimitDefinitionError, match="tags must be a dict"):
        llmledger.set_limit(usd=1, tags="plan=free")  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["environment", "argument"])
def test_disabled_creates_no_ledger_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    path = tmp_path / "off.db"
    monkeypatch.setenv("LLMLEDGER_DB", str(path))
    if how == "environment":
        monkeypatch.setenv("LLMLEDGER_DISABLED", "1")
        llmledger.init()
    else:
        llmledger.init(enabled=False)
    llmledger.track(provider="openai", model="gpt-4o", input_tokens=5)
    llmledger.flush()
    llmledger.shutdown()
    assert not path.exists()


def test_docs_quote_the_measured_figures() -> None:
    """Every share of a limit used that docs/limits.md quotes is one docs/performance.md measured."""
    import re

    docs = Path(__file__).resolve().parent.parent / "docs"
    measured = set(re.findall(r"\d+(?:\.\d+)? %", (docs / "performance.md").read_text(encoding="utf-8")))
    limits = (docs / "limits.md").read_text(encoding="utf-8")
    usage = " ".join(p for p in limits.split("\n\n") if " used" in p)  # the paragraphs quoting use
    quoted = re.findall(r"(\d+(?:\.\d+)?)(?:–(\d+(?:\.\d+)?))? %", usage)
    figures = {f"{n} %" for pair in quoted for n in pair if n}
    assert figures and figures <= measured, sorted(figures - measured)
