"""The ledger: idempotent writes, exact sums, queries, migrations, and several processes at once."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

import llmledger
from llmledger import ConfigError, InvalidQueryError, LedgerError
from llmledger.storage import Ledger
from llmledger.storage.migrate import HEAD, current_revision


def test_writes_are_idempotent_by_event_id(ledger_path: Path) -> None:
    llmledger.init(ledger=str(ledger_path))
    event = llmledger.track(provider="openai", model="gpt-4o", input_tokens=10)
    llmledger.flush()
    store = Ledger(str(ledger_path))
    store.write([event, event])
    store.write([event])
    assert store.count() == 1
    store.close()


def test_sums_are_exact_decimals(ledger: object) -> None:
    # 0.1 + 0.2 in binary floating point is 0.30000000000000004; the ledger must be exact.
    for cost in ["0.1", "0.2"] + ["0.000000000000000001"] * 1000:
        llmledger.track(provider="acme", model="m", input_tokens=1, cost_usd=Decimal(cost))
    assert llmledger.spend() == Decimal("0.300000000000001000")
    (row,) = llmledger.usage("provider")
    assert row.cost_usd == Decimal("0.300000000000001000")


def test_usage_groups_and_filters(ledger: object) -> None:
    day1 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    day2 = day1 + timedelta(days=1)
    for tenant, model, when, plan in [
        ("acme", "gpt-4o", day1, "pro"),
        ("acme", "gpt-4o", day2, "pro"),
        ("acme", "gpt-4o-mini", day2, "pro"),
        ("globex", "gpt-4o-mini", day2, "free"),
    ]:
        llmledger.track(
            provider="openai",
            model=model,
            input_tokens=1000,
            output_tokens=100,
            tenant=tenant,
            timestamp=when,
            tags={"plan": plan},
        )
    llmledger.track(
        provider="openai",
        model="gpt-4o",
        status="error",
        error_type="APIError",
        tenant="acme",
        timestamp=day2,
    )
    rows = llmledger.usage(("tenant", "model"))
    assert [(r["tenant"], r["model"], r.requests) for r in rows] == [
        ("acme", "gpt-4o", 3),
        ("acme", "gpt-4o-mini", 1),
        ("globex", "gpt-4o-mini", 1),
    ]
    assert rows[0].errors == 1 and rows[0].input_tokens == 2000
    by_day = {r["day"]: r.requests for r in llmledger.usage("day")}
    assert by_day == {"2026-03-01": 1, "2026-03-02": 4}
    assert {r["tag:plan"]: r.requests for r in llmledger.usage("tag:plan")} == {"pro": 3, "free": 1, None: 1}
    assert llmledger.spend(tenant="globex") == llmledger.usage("tenant", tenant="globex")[0].cost_usd
    assert len(llmledger.events(tags={"plan": "pro"}, limit=None)) == 3
    assert len(llmledger.events(model=["gpt-4o", "gpt-4o-mini"], tenant="acme", limit=None)) == 4
    assert len(llmledger.events(since=day2, limit=None)) == 4
    assert len(llmledger.events(since=day1, until=day2, limit=None)) == 1
    assert len(llmledger.events(since="2026-03-02", limit=None)) == 4
    assert llmledger.events(limit=2)[0].timestamp == day2  # newest first


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: llmledger.events(colour="red"), "unknown filter 'colour'"),
        (lambda: llmledger.usage("planet"), "cannot group by 'planet'"),
        (lambda: llmledger.spend(since="yesterday"), "not a time"),
        (lambda: llmledger.events(limit=0), "limit must be a positive int"),
        (lambda: llmledger.events(tenant=3), "takes a string or a list"),
        (lambda: llmledger.events(tags="plan=free"), "tags filter must be a dict"),
    ],
)
def test_bad_queries_say_what_to_fix(ledger: object, call: object, message: str) -> None:
    with pytest.raises(InvalidQueryError, match=message):
        call()  # type: ignore[operator]


def test_migrations_head_matches_alembic(ledger_path: Path) -> None:
    config = Config()
    config.set_main_option("script_location", "llmledger.storage:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD
    store = Ledger(str(ledger_path))
    assert current_revision(store.engine) == HEAD
    store.close()


def test_ledger_uses_wal_mode(ledger_path: Path) -> None:
    Ledger(str(ledger_path)).close()
    with sqlite3.connect(ledger_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unusable_ledger_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises((LedgerError, OSError)):
        llmledger.init(ledger=str(blocker / "sub" / "ledger.db"))
    with pytest.raises(ConfigError, match="in-memory"):
        llmledger.init(ledger="sqlite:///:memory:")
    with pytest.raises(ConfigError, match="ledger must be"):
        Ledger("")


def test_corrupt_ledger_file_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(str(path))


def _worker(path: str, tenant: str, n: int) -> None:
    llmledger.init(ledger=path, flush_interval=0.01)
    for i in range(n):
        llmledger.track(
            provider="openai", model="gpt-4o-mini", input_tokens=100 + i, output_tokens=10, tenant=tenant
        )
    assert llmledger.shutdown(timeout=60)


@pytest.mark.slow
def test_several_processes_share_one_ledger_file(ledger_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(ledger_path), f"t{i}", 400)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    llmledger.init(ledger=str(ledger_path))
    rows = {r["tenant"]: (r.requests, r.input_tokens) for r in llmledger.usage("tenant")}
    expected_input = sum(100 + i for i in range(400))
    assert rows == {f"t{i}": (400, expected_input) for i in range(4)}
    per_event = llmledger.events(limit=1)[0].cost_usd
    assert per_event is not None
    assert llmledger.spend() == sum((e.cost_usd or Decimal(0)) for e in llmledger.events(limit=None))


@pytest.mark.slow
def test_processes_opening_a_new_ledger_at_once_migrate_safely(tmp_path: Path) -> None:
    path = str(tmp_path / "fresh.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(path, f"t{i}", 5)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert Ledger(path).count() == 20


def test_keyset_next_page_reads_the_timestamp_index_from_the_cursor(tmp_path: Path) -> None:
    # Regression: the cursor condition `ts < T OR (ts = T AND id > E)` alone made SQLite take a
    # MULTI-INDEX OR and sort every event before the cursor (1.2 s per page at 1M events).
    import sqlalchemy as sa

    from llmledger.storage.rows import from_us

    path = str(tmp_path / "keyset.db")
    Ledger(path).close()
    raw = sqlite3.connect(path)
    raw.executemany(
        "INSERT INTO llmledger_events (event_id, schema_version, ts_us, provider, model, stream,"
        " complete, status, estimated) VALUES (?, 1, ?, 'p', 'm', 0, 1, 'ok', 0)",
        [(f"00000000-0000-7000-8000-{i:012x}", (i // 3) * 1_000_000) for i in range(3000)],
    )
    raw.commit()
    raw.execute("ANALYZE")
    raw.close()
    store = Ledger(path)
    statements: list[tuple[str, object]] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append((a[2], a[3])))
    pages, after = [], None
    while True:
        page = store.events({}, from_us(0), None, 7, True, after)
        pages += [e.event_id for e in page]
        if len(page) < 7:
            break
        after = (int(page[-1].timestamp.timestamp() * 1_000_000), page[-1].event_id)
    expected = sorted((-(i // 3), f"00000000-0000-7000-8000-{i:012x}") for i in range(3000))
    assert pages == [e for _, e in expected]  # every event once, newest first, ties by id
    sql, params = next(s for s in reversed(statements) if "ORDER BY" in s[0])
    with store.engine.connect() as conn:
        plan = " | ".join(r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))  # type: ignore[arg-type]
    store.close()
    assert "ix_llmledger_events_ts" in plan and "MULTI-INDEX OR" not in plan, plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan, plan  # only the tie-break ("RIGHT PART") is sorted


def test_a_batch_stores_each_events_own_tags(tmp_path: Path) -> None:
    """Tag sets are encoded once per distinct set in a batch: equal dicts of their own (as parsed
    from the wire), one shared dict, and sets that differ each keep what their event carried."""
    from llmledger.events import UsageEvent

    shared = {"plan": "pro"}
    tag_sets = [
        {"plan": "pro"},
        shared,
        {"plan": "free"},
        shared,
        {"plan": "pro", "team": "a"},
        {},
        {"plan": "pro"},
    ]
    events = [
        UsageEvent(
            event_id=f"e{i}",
            timestamp=datetime(2026, 3, 1, 12, i, tzinfo=timezone.utc),
            provider="openai",
            model="gpt-4o-mini",
            tags=tags,
        )
        for i, tags in enumerate(tag_sets)
    ]
    store = Ledger(str(tmp_path / "l.db"))
    store.write(events)
    stored = store.by_ids([e.event_id for e in events])
    assert [dict(stored[f"e{i}"].tags) for i in range(len(tag_sets))] == tag_sets
    assert store.usage(["tag:plan"], {})  # the tags are JSON the queries read
    store.close()
