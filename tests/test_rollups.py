"""Rollups equal the events: usage() from rollups == usage() from the events, on SQLite and PostgreSQL.

Real ledgers (a SQLite file; tests/pg.py's PostgreSQL), real writes through `Ledger.write`, deletes
through `delete_events`, the migration that builds rollups for a ledger written before them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from llmledger.events import UsageEvent
from llmledger.storage.ledger import Ledger
from llmledger.storage.queries import ModelMatch
from llmledger.storage.retention import delete_events
from llmledger.storage.rollups import CUBOIDS
from llmledger.storage.tables import rollups
from llmledger.storage.usage import cuboid_for, pieces

T0 = datetime(2026, 3, 30, 21, 0, tzinfo=timezone.utc)  # a month's end is within reach of the draws


def _event(
    minute: int,
    tenant: str | None = "acme",
    model: str = "gpt-4o-mini",
    cost: Decimal | None = Decimal("0.0015"),
    **more: Any,
) -> UsageEvent:
    return UsageEvent(
        event_id=more.pop("event_id", str(uuid.uuid4())),
        timestamp=T0 + timedelta(minutes=minute, seconds=more.pop("second", 0)),
        provider=more.pop("provider", "openai"),
        model=model,
        input_tokens=more.pop("input_tokens", 10),
        output_tokens=more.pop("output_tokens", 5),
        cost_usd=cost,
        tenant=tenant,
        **more,
    )


_events = st.builds(
    _event,
    minute=st.integers(0, 60 * 50),
    tenant=st.sampled_from([None, "acme", "globex"]),
    model=st.sampled_from(["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "claude-haiku-4-5"]),
    cost=st.one_of(
        st.none(),
        st.decimals(min_value=0, max_value=5, places=6),
        # costs SQLite's integer sums cannot hold (exponent, > 12 decimals, a sum beyond 2^63):
        # the batch takes the Python path (`rollups_sql`)
        st.sampled_from([Decimal("1E-7"), Decimal("0.0000000000000123"), Decimal("999999.5")]),
    ),
    user=st.sampled_from([None, "u1", "u2"]),
    feature=st.sampled_from([None, "chat", "search"]),
    agent=st.sampled_from([None, "bot"]),
    org=st.sampled_from([None, "o1"]),
    status=st.sampled_from(["ok", "ok", "error"]),
    estimated=st.booleans(),
    input_tokens=st.integers(0, 10**6),
    cache_read_tokens=st.integers(0, 1000),
    reasoning_tokens=st.integers(0, 1000),
    second=st.integers(0, 59),
    requested_model=st.sampled_from([None, "gpt-4o-mini", "prod-mini-deploy"]),
)
_GROUPS = ["tenant", "user", "org", "feature", "agent", "model", "provider", "hour", "day", "month"]
_instant = st.one_of(
    st.none(),
    st.integers(-120, 60 * 52).map(lambda m: T0 + timedelta(minutes=m)),  # hour-aligned or not
    st.integers(-2, 3).map(lambda d: T0.replace(hour=0) + timedelta(days=d)),  # day-aligned
)
_filters = st.fixed_dictionaries(
    {},
    optional={
        "tenant": st.sampled_from(["acme", "globex", ["acme", "globex"]]),
        "model": st.sampled_from(
            ["gpt-4o-mini", "claude-haiku-4-5", "prod-mini-deploy", ["claude-haiku-4-5", "prod-mini-deploy"]]
        ),
        "feature": st.just("chat"),
        "user": st.just("u1"),
    },
)


def _both(store: Ledger, keys: list[str], filters: dict[str, Any], since: Any, until: Any) -> None:
    fast = store.usage(keys, filters, since, until)
    exact = store.usage(keys, filters, since, until, use_rollups=False)
    assert fast == exact
    assert store.spend(filters, since, until) == sum((r.cost_usd for r in exact), Decimal(0))


def _random_history(data: st.DataObject, store: Ledger) -> list[UsageEvent]:
    written = data.draw(st.lists(_events, min_size=1, max_size=40), label="events")
    i = 0
    while i < len(written):  # batches of random sizes, some events sent twice
        n = data.draw(st.integers(1, 10), label="batch")
        batch = written[i : i + n]
        if data.draw(st.booleans(), label="resend"):
            batch = batch + written[max(0, i - 3) : i + 1]
        store.write(batch)
        i += n
    return written


def _property(store: Ledger, data: st.DataObject) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM llmledger_events"))
        conn.execute(sa.delete(rollups))
    written = _random_history(data, store)
    assert store.check_rollups() == []
    for _ in range(3):
        keys = data.draw(st.lists(st.sampled_from(_GROUPS), max_size=3, unique=True), label="group_by")
        filters = data.draw(_filters, label="filters")
        _both(store, keys, filters, data.draw(_instant, label="since"), data.draw(_instant, label="until"))
    who = data.draw(st.sampled_from(["acme", "globex"]), label="erase")
    delete_events(store.engine, store.limits, tenant=who)
    assert store.check_rollups() == []
    _both(store, ["tenant", "model", "day"], {}, None, None)
    _both(store, [], {"model": "gpt-4o-mini"}, written[0].timestamp, None)


def _check_property(url: str, examples: int) -> None:
    store = Ledger(url)

    @settings(max_examples=examples, deadline=None)
    @given(data=st.data())
    def run(data: Any) -> None:
        _property(store, data)

    try:
        run()
    finally:
        store.close()


def test_rollups_answer_as_the_events_do_sqlite(tmp_path: Path) -> None:
    _check_property(str(tmp_path / "l.db"), 30)


@pytest.mark.postgres
def test_rollups_answer_as_the_events_do_postgres(pg_url: str) -> None:
    _check_property(pg_url, 12)


def _rows(store: Ledger) -> list[Any]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(rollups).order_by(*rollups.primary_key.columns))]


def test_a_duplicate_event_adds_nothing_and_a_delete_subtracts(tmp_path: Path) -> None:
    store = Ledger(str(tmp_path / "l.db"))
    first = [_event(1, event_id="a"), _event(2, event_id="b", cost=None)]
    store.write(first)
    before = _rows(store)
    store.write([*first, first[0]])  # the same ids again, one twice in a batch
    assert _rows(store) == before
    (total,) = store.usage([], {})
    assert (total.requests, total.cost_usd, total.unpriced_requests) == (2, Decimal("0.0015"), 1)
    store.write([_event(3, tenant="globex", cost=Decimal("2.5"))])
    delete_events(store.engine, store.limits, tenant="globex")
    assert _rows(store) == before
    delete_events(store.engine, store.limits, tenant="acme")
    assert _rows(store) == []
    store.close()


def test_rebuild_gives_the_rows_writes_kept_and_reconcile_finds_drift(tmp_path: Path) -> None:
    store = Ledger(str(tmp_path / "l.db"))
    store.write([_event(m * 7, tenant=["a", "b", None][m % 3], user=f"u{m % 4}") for m in range(300)])
    kept = _rows(store)
    assert store.rebuild_rollups() == len(kept)
    assert _rows(store) == kept
    assert store.check_rollups() == []
    with store.engine.begin() as conn:  # drift: a row changed behind the ledger's back
        conn.execute(sa.text("UPDATE llmledger_rollups SET requests = requests + 1 WHERE cuboid = 'u'"))
    diffs = store.check_rollups()
    assert diffs
    assert {d["cuboid"] for d in diffs} == {"u"}
    assert all(d["rollup"]["requests"] == d["ledger"]["requests"] + 1 for d in diffs)
    store.rebuild_rollups()
    assert store.check_rollups() == []
    store.close()


def test_the_migration_builds_rollups_for_events_written_before_it(tmp_path: Path) -> None:
    path = str(tmp_path / "l.db")
    store = Ledger(path)
    store.write(
        [
            _event(
                m * 13, user=f"u{m % 5}", cost=(Decimal(m) / 7).quantize(Decimal("1e-12")) if m % 4 else None
            )
            for m in range(200)
        ]
    )
    kept = _rows(store)
    with store.engine.begin() as conn:  # back to the schema of before the rollups
        conn.execute(sa.text("DROP TABLE llmledger_rollups"))
        conn.execute(sa.text("DROP TABLE llmledger_forgotten_spend"))  # 0008, after the rollups
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0006_webhook_deliveries'"))
    store.close()
    store = Ledger(path)
    assert _rows(store) == kept
    assert store.check_rollups() == []
    store.close()


def test_which_queries_the_rollups_answer() -> None:
    assert cuboid_for(["tenant", "model"], {}) == "tm"
    assert cuboid_for([], {}) == "m"
    assert cuboid_for(["day"], {"feature": "chat"}) == "f"
    assert cuboid_for(["user"], {"tenant": "a"}) == "u"
    assert cuboid_for(["agent"], {"org": "o"}) == "all"
    assert cuboid_for(["agent", "day"], {}) == "all"
    assert cuboid_for(["agent", "hour"], {}) is None  # `all` keeps no hours
    assert cuboid_for(["tenant", "hour"], {"user": "u1"}) == "u"
    assert cuboid_for(["tenant"], {"model": ModelMatch(("gpt-4o-mini",), ())}) == "tm"
    # `requested_model` is not rolled up: a filter that must match it reads the events
    assert cuboid_for(["tenant"], {"model": ModelMatch(("gpt-4o-mini",), ("prod-mini-deploy",))}) is None
    assert cuboid_for(["session"], {}) is None
    assert cuboid_for([], {"tags": {"plan": "pro"}}) is None
    assert cuboid_for([], {"status": "error"}) is None
    assert set(CUBOIDS) == {"m", "f", "tm", "u", "all"}
    h, d = 3_600_000_000, 86_400_000_000
    assert pieces(None, None) == [("day", -(2**62), 2**62)]
    assert pieces(d + 5, 3 * d + h + 7) == [
        ("events", d + 5, d + h),
        ("hour", d + h, 2 * d),
        ("day", 2 * d, 3 * d),
        ("hour", 3 * d, 3 * d + h),
        ("events", 3 * d + h, 3 * d + h + 7),
    ]
    assert pieces(d + 5, d + 9) == [("events", d + 5, d + 9)]
    assert pieces(5, 5) == []


def test_a_model_filter_matches_snapshots_and_requested_deployment_names(tmp_path: Path) -> None:
    """One model identity (tests/test_model_identity.py) holds through the rollups: `model=` finds
    the answered snapshot (rollups: `model IN (names)`) and a deployment name no catalogue knows
    finds the calls that requested it (read from the events)."""
    store = Ledger(str(tmp_path / "l.db"))
    store.write(
        [
            _event(1, model="gpt-4o-mini-2024-07-18", requested_model="gpt-4o-mini", cost=Decimal("1")),
            _event(2, model="gpt-4o-mini-2024-07-18", requested_model="prod-mini-deploy", cost=Decimal("2")),
            _event(3, model="claude-haiku-4-5", requested_model="claude-haiku-4-5", cost=Decimal("4")),
            _event(24 * 60 * 3, model="gpt-4o-mini", requested_model="gpt-4o-mini", cost=Decimal("8")),
        ]
    )
    for rollups_on in (True, False):
        assert store.spend({"model": "gpt-4o-mini"}) == Decimal("11")
        assert store.spend({"model": "gpt-4o-mini-2024-07-18"}) == Decimal("11")
        assert store.spend({"model": "prod-mini-deploy"}) == Decimal("2")
        assert store.spend({"model": ["prod-mini-deploy", "claude-haiku-4-5"]}) == Decimal("6")
        rows = store.usage(["model"], {"model": "prod-mini-deploy"}, use_rollups=rollups_on)
        assert [(r.model, r.cost_usd) for r in rows] == [("gpt-4o-mini-2024-07-18", Decimal("2"))]
        rows = store.usage(
            ["tenant"], {"model": "gpt-4o-mini"}, T0, T0 + timedelta(days=4), use_rollups=rollups_on
        )
        assert [(r.tenant, r.requests, r.cost_usd) for r in rows] == [("acme", 3, Decimal("11"))]
    store.close()


def test_sqlite_sums_or_falls_back_to_python_exactly(tmp_path: Path) -> None:
    from llmledger.storage import rollups_sql

    store = Ledger(str(tmp_path / "l.db"))
    plain = [_event(m, cost=Decimal(c)) for m, c in enumerate(["0.000375", "-2.5", "3", "0.123456789012"])]
    odd = [_event(10, cost=Decimal("1E-13")), _event(11, cost=Decimal("999999.5"))]
    big = [_event(20 + m, cost=Decimal("999999.999999999999")) for m in range(10)]  # > 2^63 scaled
    for batch in (plain, odd, big):
        with store.engine.begin() as conn:
            last = rollups_sql.last_rowid(conn)
        store.write(batch)
        with store.engine.begin() as conn:  # what the SQL path does with the same rows
            conn.execute(sa.delete(rollups))
            assert rollups_sql.add_since(conn, last, len(batch)) is (batch is plain)
            conn.rollback()
    assert store.check_rollups() == []
    (total,) = store.usage([], {})
    assert total.cost_usd == sum((e.cost_usd or 0 for e in plain + odd + big), Decimal(0))
    with store.engine.connect() as conn:  # the SQL path writes the same rows the Python path does
        conn.execute(sa.delete(rollups))
        assert rollups_sql.rebuild(conn) is False  # not every cost fits
    kept = _rows(store)
    store.close()
    assert kept


def test_batches_within_one_hour_add_up_as_the_python_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's common batch: every event in one hour (the SQL path's day rows then skip their
    grouping), written again and again onto the same rows, users and their dimensions repeated."""
    from llmledger.storage import rollups_sql

    store = Ledger(str(tmp_path / "l.db"))
    for batch in range(4):
        events = [
            _event(
                5,
                second=n % 60,
                tenant=f"t{n % 3}",
                user=f"u{n % 7}",
                feature=["chat", None][n % 2],
                cost=None if n % 11 == 0 else Decimal(f"0.{batch}{n:03d}5"),
            )
            for n in range(40)
        ]
        with store.engine.begin() as conn:
            last = rollups_sql.last_rowid(conn)
        store.write(events)
        assert store.check_rollups() == []
        with store.engine.begin() as conn:  # the statements for several hours give the same rows
            conn.execute(sa.delete(rollups))
            assert rollups_sql.add_since(conn, last, len(events))
            one_hour = sorted(tuple(r) for r in conn.execute(sa.select(rollups)))
            conn.execute(sa.delete(rollups))
            monkeypatch.setitem(rollups_sql._INSERTS, True, rollups_sql._INSERTS[False])
            assert rollups_sql.add_since(conn, last, len(events))
            monkeypatch.undo()
            assert sorted(tuple(r) for r in conn.execute(sa.select(rollups))) == one_hour
            conn.rollback()
    kept = _rows(store)
    assert store.rebuild_rollups() == len(kept)
    assert _rows(store) == kept
    (total,) = store.usage([], {})
    assert total.requests == 160
    assert total.cost_usd == sum(
        (Decimal(f"0.{b}{n:03d}5") for b in range(4) for n in range(40) if n % 11), Decimal(0)
    )
    store.close()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**8), max_value=10**8),
            st.decimals(min_value=0, max_value=2, places=14),
        ),
        max_size=4,
    )
)
def test_fits_says_what_the_sql_check_says_of_the_stored_texts(costs: list[Decimal | None]) -> None:
    """`rollups_sql.fits` (Python, before the write) and `_PLAIN` (SQL, on the stored text) agree."""
    import sqlite3

    from llmledger.storage import rollups_sql

    conn = sqlite3.connect(":memory:")
    sql = f"SELECT {rollups_sql._PLAIN} FROM (SELECT ? AS cost_usd)"
    plain = all(conn.execute(sql, (None if c is None else str(c),)).fetchone()[0] for c in costs)
    assert rollups_sql.fits(costs) is plain
