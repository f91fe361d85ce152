"""Rollups: per-hour and per-day sums of the ledger's events, kept in the transaction that writes them.

A rollup row holds, for one time bucket (an hour or a UTC day) and one combination of dimension
values, the number of requests, errors (status other than "ok"), unpriced and estimated events, the
token sums by kind and the exact cost (Decimal: NUMERIC on PostgreSQL, canonical text summed with
`dadd`/`dsum` on SQLite). Rows exist for several *cuboids*, each a set of dimensions, so that a query
reads the smallest set of rows that answers it:

| cuboid | dimensions                                         | grains      |
| ------ | -------------------------------------------------- | ----------- |
| `m`    | model, provider                                    | hour, day   |
| `f`    | feature, model, provider                           | hour, day   |
| `tm`   | tenant, model, provider                            | hour, day   |
| `u`    | tenant, user                                       | hour, day   |
| `all`  | tenant, user, org, feature, agent, model, provider | day         |

Tags, session, endpoint, status and the other event columns are not rolled up: a query that filters
or groups by them reads the events (the exact path). Rows are keyed by (grain, cuboid, bucket_us,
key) where `key` is a 128-bit BLAKE2b digest of the dimension values (so the primary key stays
small on PostgreSQL whatever the labels' lengths).

On SQLite, SQLite sums a write's rows itself (`llmledger.storage.rollups_sql`, exact integer
sums). Otherwise (PostgreSQL, or a cost those sums cannot hold) events are aggregated here in
Python, before the write lock, and written with one upsert per batch: one row per distinct (grain,
cuboid, bucket, values). Deleting events subtracts them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from hashlib import blake2b as _blake2b
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.events.event import UsageEvent
from llmledger.storage.rows import to_us
from llmledger.storage.tables import events, meta, rollups

__all__ = [
    "CUBOIDS",
    "DAY_US",
    "DIMENSIONS",
    "GRAINS",
    "HOUR_US",
    "MEASURES",
    "add_events",
    "check",
    "enabled",
    "prepare",
    "rebuild",
    "subtract_rows",
]

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US

DIMENSIONS: tuple[str, ...] = ("tenant", "user", "org", "feature", "agent", "model", "provider")
"""The event columns rollups are keyed by (each cuboid keeps some of them)."""

CUBOIDS: dict[str, tuple[str, ...]] = {
    "m": ("model", "provider"),
    "f": ("feature", "model", "provider"),
    "tm": ("tenant", "model", "provider"),
    "u": ("tenant", "user"),
    "all": DIMENSIONS,
}
"""Cuboid name -> its dimensions, smallest (fewest rows) first: a query uses the first that covers it."""

TOKENS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
COUNTS: tuple[str, ...] = ("requests", "errors", "unpriced", "estimated")
MEASURES: tuple[str, ...] = (*COUNTS, *TOKENS, "cost_usd")
"""The summed columns of a rollup row, in the order of an accumulator list."""

_N_INT = len(COUNTS) + len(TOKENS)
_INDEX = {name: i for i, name in enumerate(DIMENSIONS)}

GRAINS: dict[str, tuple[int, ...]] = {
    "m": (HOUR_US, DAY_US),
    "f": (HOUR_US, DAY_US),
    "tm": (HOUR_US, DAY_US),
    "u": (HOUR_US, DAY_US),
    "all": (DAY_US,),
}
"""The bucket sizes each cuboid keeps. The widest cuboid (`all`, about one row per event of a
batch) keeps days only: its hours would double the write cost for the rare query that needs every
dimension within a day; such a query reads those hours from the events (`llmledger.storage.usage`)."""

_PLAN = tuple((name, tuple(_INDEX[d] for d in dims), GRAINS[name]) for name, dims in CUBOIDS.items())

Acc = list[Any]
"""An accumulator: the integer measures (COUNTS then TOKENS), then the cost (Decimal or None)."""
Dims = tuple[str | None, ...]
Groups = dict[tuple[int, Dims], Acc]
"""(bucket_us, dimension values) -> accumulator."""
RowKey = tuple[int, str, int, Dims]
"""(grain, cuboid, bucket_us, the cuboid's dimension values)."""


def _key(cuboid: str, dims: Dims) -> str:
    # Fields joined by NUL (no stored label holds one); None is "\x01", a string "s" + itself.
    raw = "\x00".join(["s" + cuboid, *("\x01" if v is None else "s" + v for v in dims)])
    return _blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


_PREFIXES: dict[tuple[str, Dims], tuple[Any, ...]] = {}
_MAX_PREFIXES = 100_000


def _prefix(cuboid: str, sub: Dims) -> tuple[Any, ...]:
    """(cuboid, key, the 7 dimension columns): the fixed part of a row, cached across batches."""
    found = _PREFIXES.get((cuboid, sub))
    if found is None:
        dims: list[Any] = [None] * len(DIMENSIONS)
        for i, value in zip(_PLAN_INDEX[cuboid], sub, strict=True):
            dims[i] = value
        found = (cuboid, _key(cuboid, sub), *dims)
        if len(_PREFIXES) >= _MAX_PREFIXES:
            _PREFIXES.clear()
        _PREFIXES[(cuboid, sub)] = found
    return found


_PLAN_INDEX = {name: picks for name, picks, _ in _PLAN}


def _merge(into: Acc, acc: Acc) -> None:
    for i in range(_N_INT):
        into[i] += acc[i]
    cost = acc[_N_INT]
    if cost is not None:
        into[_N_INT] = cost if into[_N_INT] is None else into[_N_INT] + cost


def _event_values(e: UsageEvent) -> tuple[int, Dims, Acc]:
    dims = (e.tenant, e.user, e.org, e.feature, e.agent, e.model, e.provider)
    acc: Acc = [
        1,
        0 if e.status == "ok" else 1,
        1 if e.cost_usd is None else 0,
        1 if e.estimated else 0,
        e.input_tokens,
        e.output_tokens,
        e.cache_read_tokens,
        e.cache_write_tokens,
        e.reasoning_tokens,
        e.cost_usd,
    ]
    return to_us(e.timestamp), dims, acc


def _row_values(row: Mapping[Any, Any]) -> tuple[int, Dims, Acc]:
    dims = tuple(row[d] for d in DIMENSIONS)
    cost = row["cost_usd"]
    acc: Acc = [
        1,
        0 if row["status"] == "ok" else 1,
        1 if cost is None else 0,
        1 if row["estimated"] else 0,
        *(int(row[t]) for t in TOKENS),
        None if cost is None else Decimal(str(cost)),
    ]
    return int(row["ts_us"]), dims, acc


def _by_hour(values: Iterable[tuple[int, Dims, Acc]]) -> Groups:
    groups: Groups = {}
    for ts_us, dims, acc in values:
        k = (ts_us - ts_us % HOUR_US, dims)
        have = groups.get(k)
        if have is None:
            groups[k] = acc
        else:
            _merge(have, acc)
    return groups


def _cuboid_rows(hourly: Groups) -> dict[RowKey, Acc]:
    """Every (grain, cuboid, bucket, dims) accumulator derived from full-dimension hourly groups.

    The groups are projected once per distinct dimension tuple, and row keys are interned to small
    integers, so the per-group work is a few integer-keyed dictionary lookups; accumulators are
    summed column-wise once at the end (most rows have a single group)."""
    plans: dict[Dims, list[tuple[int, tuple[int, ...]]]] = {}
    subs: dict[tuple[str, Dims], int] = {}
    names: list[tuple[str, Dims]] = []
    parts: dict[tuple[int, int, int], list[Acc]] = {}
    for (hour, dims), acc in hourly.items():
        plan = plans.get(dims)
        if plan is None:
            plan = []
            for name, picks, grains in _PLAN:
                sub = dims if name == "all" else tuple([dims[i] for i in picks])
                sid = subs.get((name, sub))
                if sid is None:
                    sid = subs[(name, sub)] = len(names)
                    names.append((name, sub))
                plan.append((sid, grains))
            plans[dims] = plan
        day = hour - hour % DAY_US
        for sid, grains in plan:
            for grain in grains:
                k = (grain, hour if grain == HOUR_US else day, sid)
                have = parts.get(k)
                if have is None:
                    parts[k] = [acc]
                else:
                    have.append(acc)
    out: dict[RowKey, Acc] = {}
    for (grain, bucket, sid), accs in parts.items():
        name, sub = names[sid]
        if len(accs) == 1:
            out[(grain, name, bucket, sub)] = accs[0]
            continue
        total: Acc = [sum(column) for column in zip(*[a[:_N_INT] for a in accs], strict=True)]
        costs = [a[_N_INT] for a in accs if a[_N_INT] is not None]
        total.append(sum(costs[1:], costs[0]) if costs else None)
        out[(grain, name, bucket, sub)] = total
    return out


def _params(rows: dict[RowKey, Acc], sign: int, sqlite: bool) -> list[tuple[Any, ...]]:
    """Rows in `_COLUMNS` order (the dimensions a cuboid does not keep are NULL)."""
    params = []
    for (grain, name, bucket, sub), acc in rows.items():
        cost = acc[_N_INT]
        if sign < 0:
            measures = [-v for v in acc[:_N_INT]]
            cost = None if cost is None else -cost
        else:
            measures = acc[:_N_INT]
        money = None if cost is None else (str(cost) if sqlite else cost)
        params.append((grain, bucket, *_prefix(name, sub), *measures, money))
    return params


_COLUMNS = ("grain", "bucket_us", "cuboid", "key", *DIMENSIONS, *MEASURES)
_T = rollups.name


def _upsert_sql(sqlite: bool) -> str:
    cols = ", ".join(f'"{c}"' for c in _COLUMNS)
    marks = ", ".join("?" if sqlite else "%s" for _ in _COLUMNS)
    adds = ", ".join(f'"{m}" = {_T}."{m}" + excluded."{m}"' for m in MEASURES[:_N_INT])
    total = f"dadd({_T}.cost_usd, excluded.cost_usd)" if sqlite else f"{_T}.cost_usd + excluded.cost_usd"
    cost = (
        f"cost_usd = CASE WHEN excluded.cost_usd IS NULL THEN {_T}.cost_usd"
        f" WHEN {_T}.cost_usd IS NULL THEN excluded.cost_usd ELSE {total} END"
    )
    return (
        f"INSERT INTO {_T} ({cols}) VALUES ({marks})"
        f" ON CONFLICT (grain, cuboid, bucket_us, key) DO UPDATE SET {adds}, {cost}"
    )


_UPSERT = {True: _upsert_sql(True)}
_PG_CHUNK = 65_535 // len(_COLUMNS)
_PG_ROW = "(" + ", ".join("%s" for _ in _COLUMNS) + ")"


def _pg_upsert(n: int) -> str:
    """The PostgreSQL upsert of `n` rows in one statement (rows are distinct keys: a statement may
    not update one row twice)."""
    one = _upsert_sql(False)
    return one.replace(f"VALUES {_PG_ROW}", "VALUES " + ", ".join([_PG_ROW] * n))


def _write(conn: Connection, rows: dict[RowKey, Acc], sign: int) -> None:
    if not rows:
        return
    sqlite = conn.dialect.name == "sqlite"
    params = _params(rows, sign, sqlite)
    if sqlite:  # driver-ready tuples, one prepared statement: the writer's hot path
        conn.exec_driver_sql(_UPSERT[True], params)
    else:  # one multi-row statement per chunk: one round trip (PostgreSQL allows 65,535 parameters)
        for i in range(0, len(params), _PG_CHUNK):
            chunk = params[i : i + _PG_CHUNK]
            flat = tuple(value for row in chunk for value in row)
            conn.exec_driver_sql(_pg_upsert(len(chunk)), flat)
    if sign < 0:  # drop emptied rows; a row with no priced event left has no cost
        keys = [{"grain": g, "cuboid": c, "bucket_us": b, "key": _key(c, s)} for (g, c, b, s) in rows]
        where = "grain = :grain AND cuboid = :cuboid AND bucket_us = :bucket_us AND key = :key"
        conn.execute(sa.text(f"DELETE FROM {_T} WHERE {where} AND requests <= 0"), keys)
        conn.execute(sa.text(f"UPDATE {_T} SET cost_usd = NULL WHERE {where} AND requests = unpriced"), keys)


_OFF = "rollups_off"
_BIG = 2**63 - 1


def enabled(conn: Connection) -> bool:
    """False when `rebuild` found sums beyond 64 bits (counts an older version let in): queries then
    read the events (and `check` compares nothing) until a rebuild succeeds."""
    query = sa.select(meta.c.value).where(meta.c.key == _OFF)
    return not conn.execute(query).scalar()


def prepare(batch: Sequence[UsageEvent]) -> dict[RowKey, Acc]:
    """The rollup rows of events (each once): computed before the write transaction, so the
    ledger's write lock is not held for it (`add_events(..., prepared=)`)."""
    return _cuboid_rows(_by_hour(_event_values(e) for e in batch))


def add_events(
    conn: Connection, batch: Sequence[UsageEvent], prepared: dict[RowKey, Acc] | None = None
) -> None:
    """Add NEW events (not already in the ledger; each once) to the rollups, in the caller's
    transaction. `prepared`: `prepare(batch)` computed earlier.

    Written whether or not `enabled`: while rollups are off the table holds only rows of events
    written since (bounded sums), no query reads it, and the `rebuild` that turns them on again
    replaces every row; not reading the flag saves a round trip per write."""
    if batch:
        _write(conn, prepare(batch) if prepared is None else prepared, 1)


def subtract_rows(conn: Connection, rows: Iterable[Mapping[Any, Any]]) -> None:
    """Take event rows (mappings of the events table) being deleted off the rollups (whether or not
    `enabled`, as `add_events`)."""
    _write(conn, _cuboid_rows(_by_hour(_row_values(r) for r in rows)), -1)


# -- rebuilding and checking from the events -------------------------------------------------------


def _hourly_from_events(conn: Connection) -> Iterator[Groups]:
    """The events summed by hour and every dimension, one UTC day at a time (bounded memory)."""
    sqlite = conn.dialect.name == "sqlite"
    hour = (events.c.ts_us - events.c.ts_us % HOUR_US).label("bucket")
    cost = sa.func.dsum(events.c.cost_usd) if sqlite else sa.func.sum(events.c.cost_usd)
    total = sa.func.isum if sqlite else sa.func.sum
    query = (
        sa.select(
            hour,
            *[events.c[d] for d in DIMENSIONS],
            sa.func.count().label("requests"),
            sa.func.sum(sa.case((events.c.status != "ok", 1), else_=0)).label("errors"),
            sa.func.sum(sa.case((events.c.cost_usd.is_(None), 1), else_=0)).label("unpriced"),
            sa.func.sum(sa.case((events.c.estimated, 1), else_=0)).label("estimated"),
            *[total(events.c[t]).label(t) for t in TOKENS],
            cost.label("cost_usd"),
        )
        .group_by(hour, *[events.c[d] for d in DIMENSIONS])
        .order_by(hour)
    )
    day: int | None = None
    groups: Groups = {}
    result = conn.execute(query.execution_options(stream_results=True, yield_per=5000))
    for row in result.mappings():
        bucket = int(row["bucket"])
        if day is not None and bucket - bucket % DAY_US != day:
            yield groups
            groups = {}
        day = bucket - bucket % DAY_US
        acc: Acc = [int(row[c]) for c in MEASURES[:_N_INT]]
        acc.append(None if row["cost_usd"] is None else Decimal(str(row["cost_usd"])))
        groups[(bucket, tuple(row[d] for d in DIMENSIONS))] = acc
    if groups:
        yield groups


def rebuild(conn: Connection) -> int:
    """Replace every rollup row with sums recomputed from the events (in the caller's transaction).
    Returns how many rollup rows there are now."""
    conn.execute(sa.delete(rollups))
    conn.execute(sa.delete(meta).where(meta.c.key == _OFF))
    if conn.dialect.name == "sqlite":
        from llmledger.storage import rollups_sql  # it builds on this module

        if rollups_sql.rebuild(conn):  # SQLite groups the events itself (exact integer sums)
            return int(conn.execute(sa.select(sa.func.count()).select_from(rollups)).scalar_one())
    written = 0
    # A day's groups are complete before the next day's come, so rows of different days never meet.
    for day in _hourly_from_events(conn):
        rows = _cuboid_rows(day)
        if any(abs(acc[i]) > _BIG for acc in rows.values() for i in range(_N_INT)):
            conn.execute(sa.delete(rollups))
            conn.execute(sa.insert(meta).values(key=_OFF, value=1))
            return 0
        _write(conn, rows, 1)
        written += len(rows)
    return written


def _stored(conn: Connection, first: int, last: int) -> dict[tuple[int, str, int, str], Acc]:
    query = sa.select(rollups).where(rollups.c.bucket_us >= first, rollups.c.bucket_us < last)
    out: dict[tuple[int, str, int, str], Acc] = {}
    for r in conn.execute(query).mappings():
        acc: Acc = [int(r[c]) for c in MEASURES[:_N_INT]]
        acc.append(r["cost_usd"])
        out[(int(r["grain"]), r["cuboid"], int(r["bucket_us"]), r["key"])] = acc
    return out


def check(
    conn: Connection, on_difference: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Every rollup row that differs from the sums of the events: `{grain, cuboid, bucket_us, dims,
    ledger, rollup}` (each a dict of measures, or None for a missing row). Empty: the rollups agree."""
    out: list[dict[str, Any]] = []
    if not enabled(conn):
        return out  # no rollups are kept (see `enabled`): nothing can disagree

    def compare(expected: dict[tuple[int, str, int, Dims], Acc], first: int, last: int) -> None:
        stored = _stored(conn, first, last)
        want = {(g, c, b, _key(c, s)): (s, acc) for (g, c, b, s), acc in expected.items()}
        for k in sorted(set(want) | set(stored)):
            dims, acc = want.get(k, (None, None))
            have = stored.get(k)
            if acc != have:
                diff = {
                    "grain": "hour" if k[0] == HOUR_US else "day",
                    "cuboid": k[1],
                    "bucket_us": k[2],
                    "dims": None if dims is None else dict(zip(CUBOIDS[k[1]], dims, strict=True)),
                    "ledger": None if acc is None else dict(zip(MEASURES, acc, strict=True)),
                    "rollup": None if have is None else dict(zip(MEASURES, have, strict=True)),
                }
                out.append(diff)
                if on_difference is not None:
                    on_difference(diff)

    lowest, highest = -(2**62), 2**62
    previous = lowest
    for day in _hourly_from_events(conn):
        start = next(iter(day))[0]
        start -= start % DAY_US
        compare({}, previous, start)  # days without events hold no rollup rows
        compare(_cuboid_rows(day), start, start + DAY_US)
        previous = start + DAY_US
    compare({}, previous, highest)
    return out
