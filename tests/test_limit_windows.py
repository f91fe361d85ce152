"""Limit definitions and windows: calendar buckets in a time zone, month ends, rolling, lifetime."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from llmledger.errors import LimitDefinitionError
from llmledger.limit.define import make_limit
from llmledger.limit.model import parse_window
from llmledger.limit.windows import span

UTC = timezone.utc


def at(text: str, tz: str = "UTC") -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


def test_day_in_utc_and_in_a_time_zone() -> None:
    utc = span(parse_window("day"), at("2026-03-10T23:59:59"))
    assert datetime.fromtimestamp(utc.first, UTC) == at("2026-03-10T00:00:00")
    assert utc.resets_at == at("2026-03-11T00:00:00")
    # 23:30 UTC on the 10th is already the 11th in Paris (UTC+1)
    paris = span(parse_window("day", tz="Europe/Paris"), at("2026-03-10T23:30:00"))
    assert datetime.fromtimestamp(paris.first, UTC) == at("2026-03-10T23:00:00")
    assert paris.resets_at == at("2026-03-11T23:00:00")


def test_day_across_a_dst_change_is_23_hours() -> None:
    w = parse_window("day", tz="America/New_York")
    s = span(w, at("2026-03-08T12:00:00", "America/New_York"))  # DST starts that night
    assert s.resets_at is not None
    assert (s.resets_at - datetime.fromtimestamp(s.first, UTC)).total_seconds() == 23 * 3600


def test_week_start_day() -> None:
    wednesday = at("2026-11-25T10:00:00")
    monday = span(parse_window("week"), wednesday)
    sunday = span(parse_window("week", week_start="sunday"), wednesday)
    assert datetime.fromtimestamp(monday.first, UTC) == at("2026-11-23T00:00:00")
    assert datetime.fromtimestamp(sunday.first, UTC) == at("2026-11-22T00:00:00")


@pytest.mark.parametrize(
    ("moment", "anchor", "start", "reset"),
    [
        ("2026-01-31T23:59:59", 1, "2026-01-01", "2026-02-01"),
        ("2026-02-01T00:00:00", 1, "2026-02-01", "2026-03-01"),
        ("2026-12-31T12:00:00", 1, "2026-12-01", "2027-01-01"),
        ("2026-03-14T12:00:00", 15, "2026-02-15", "2026-03-15"),
        ("2026-01-10T12:00:00", 15, "2025-12-15", "2026-01-15"),
        ("2026-02-28T12:00:00", 28, "2026-02-28", "2026-03-28"),
    ],
)
def test_month_boundaries_and_anchor(moment: str, anchor: int, start: str, reset: str) -> None:
    s = span(parse_window("month", month_anchor=anchor), at(moment))
    assert datetime.fromtimestamp(s.first, UTC) == at(start + "T00:00:00")
    assert s.resets_at == at(reset + "T00:00:00")


def test_month_in_tokyo() -> None:
    # 2026-01-31 20:00 UTC is already February 1st in Tokyo
    s = span(parse_window("month", tz="Asia/Tokyo"), at("2026-01-31T20:00:00"))
    assert datetime.fromtimestamp(s.first, UTC) == at("2026-01-31T15:00:00")


def test_rolling_and_lifetime() -> None:
    w = parse_window("rolling:1h")
    s = span(w, at("2026-05-05T10:30:30"))
    assert s.last - s.first == 60  # 61 one-minute slots: at least the full hour (issue 8 part 4)
    assert s.resets_at == at("2026-05-05T10:31:00")  # the next slide of the window
    assert span(parse_window("lifetime"), at("2026-05-05T10:30:30")).resets_at is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"usd": 1, "tokens": 5}, "exactly one"),
        ({}, "exactly one"),
        ({"usd": -1}, ">= 0"),
        ({"usd": "ten"}, "number"),
        ({"tokens": 1.5}, "whole number"),
        ({"usd": 1, "per": "year"}, "per='year'"),
        ({"usd": 1, "per": "rolling"}, "needs a span"),
        ({"usd": 1, "per": "rolling:10s"}, "at least a minute"),
        ({"usd": 1, "tz": "Mars/Olympus"}, "time zone"),
        ({"usd": 1, "week_start": "someday"}, "week_start"),
        ({"usd": 1, "month_anchor": 31}, "1 to 28"),
        ({"usd": 1, "mode": "maybe"}, "mode"),
        ({"usd": 1, "enforcement": "loose"}, "enforcement"),
        ({"usd": 1, "customer": "x"}, "unknown scope"),
        ({"usd": 1, "tenant": ""}, "non-empty"),
        ({"usd": 1, "thresholds": ("a",)}, "thresholds"),
    ],
)
def test_bad_definitions_say_what_to_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LimitDefinitionError, match=message):
        make_limit("x", **kwargs)  # type: ignore[arg-type]


def test_scope_matching_and_subjects() -> None:
    limit = make_limit("x", usd=1, per="day", user="*", tags={"plan": "free"})
    assert limit.amount == Decimal(1)
    assert limit.subject({"user": "u1", "tag:plan": "free"}) == "user=u1"
    assert limit.subject({"user": "u1", "tag:plan": "pro"}) is None
    assert limit.subject({"user": None, "tag:plan": "free"}) is None
    assert make_limit("y", usd=1, tenant="acme").subject({"tenant": "acme"}) == ""
