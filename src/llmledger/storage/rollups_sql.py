"""Rollups summed by SQLite itself: the events' costs as scaled integers, grouped in C.

`llmledger.storage.rollups` sums in Python (exact Decimals); this module lets SQLite group the
events with its native integer `sum()`, which is exact too when every cost is a plain decimal of at
most `SCALE_DIGITS` fraction digits and `_MAX_INT_DIGITS` integer digits ("0.000375", "-2.5"): its
value times 10^12 is an integer, and the sums of those integers are the exact sums of the costs.
A cost written any other way ("1E-7", more digits) or a sum beyond 64 bits (SQLite raises "integer
overflow") makes `add_since` / `rebuild` return False having written nothing (they run in a
savepoint): the caller then takes the Python path. The rows written are the same rows with the
same keys (`rollups._key`), so both paths mix freely.

The events are first summed by hour and every dimension into a temporary table (one pass over the
events), then each cuboid and grain is grouped from it with one `INSERT ... SELECT ... GROUP BY ...
ON CONFLICT DO UPDATE` statement. SQLite only: PostgreSQL keeps the Python path.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Connection

from llmledger.storage.rollups import CUBOIDS, DAY_US, DIMENSIONS, GRAINS, HOUR_US, MEASURES, TOKENS, _key
from llmledger.storage.tables import events, rollups

__all__ = ["SCALE_DIGITS", "SUMS", "add_since", "fits", "last_rowid", "rebuild", "scaled"]

SCALE_DIGITS = 12
"""Fraction digits a cost may have for the SQL path (its value times 10^12 is an integer)."""
_MAX_INT_DIGITS = 6  # |cost| < 10^6 USD per event: its scaled value stays far below 2^63
_SCALE = 10**SCALE_DIGITS
_STAGE = "temp.llmledger_rollup_stage"
_E = events.name
_R = rollups.name
_N_INT = len(MEASURES) - 1

_DOT = "instr(cost_usd, '.')"
_FRAC = f"(CASE WHEN {_DOT} THEN length(cost_usd) - {_DOT} ELSE 0 END)"
_INT = f"(CASE WHEN {_DOT} THEN {_DOT} - 1 ELSE length(cost_usd) END - (cost_usd GLOB '-*'))"
_SCALED = (
    f"CAST(replace(cost_usd, '.', '') AS INTEGER)"
    f" * CAST(substr('1{'0' * SCALE_DIGITS}', 1, {SCALE_DIGITS + 1} - {_FRAC}) AS INTEGER)"
)
"""The cost times 10^12 as an integer: its digits without the point, times 10^(12 - its fraction
digits); "-2.5" -> -25 * 10^11 (exact for the costs `_PLAIN` accepts). Few string calls: it runs
once per row read."""
_PLAIN = (
    "(cost_usd IS NULL OR (cost_usd NOT GLOB '*[^0-9.-]*'"
    " AND (cost_usd GLOB '[0-9]*' OR cost_usd GLOB '-[0-9]*') AND cost_usd GLOB '*[0-9]'"
    " AND cost_usd NOT GLOB '?*-*' AND cost_usd NOT GLOB '*.*.*'"
    f" AND {_FRAC} <= {SCALE_DIGITS} AND {_INT} <= {_MAX_INT_DIGITS}))"
)
"""True when `_SCALED` is exact for the cost (None counts as exact: it is not summed)."""

SUMS = (
    f"sum(CASE WHEN cost_usd IS NULL THEN NULL ELSE {_SCALED} END)",
    f"max({_FRAC})",
    f"coalesce(max({_FRAC}) <= {SCALE_DIGITS} AND max({_INT}) <= {_MAX_INT_DIGITS}"
    " AND max(instr(cost_usd, 'E')) = 0, 1)",
)
"""Aggregates over a text `cost_usd` column for reading: the costs' sum times 10^12, their most
fraction digits, and whether that sum is exact (0: sum with `dsum` instead; see `scaled`). The
stored texts are canonical (`str(Decimal)`, or `_TEXT`): `-?digits[.digits]` or with an exponent,
so three aggregates of the digit counts and the exponent's "E" check them, rather than `_PLAIN`
on every row."""


def scaled(total: int | None, digits: int | None) -> Decimal | None:
    """The Decimal of a `SUMS` sum, with the fraction digits `dsum` would give (the most of its
    terms'); None: no cost was summed."""
    if total is None:
        return None
    return Decimal(total).scaleb(-SCALE_DIGITS).quantize(Decimal(1).scaleb(-max(0, digits or 0)))


_DIM_COLS = ", ".join(f'"{d}"' for d in DIMENSIONS)
_STAGE_COLS = f"(bucket, {_DIM_COLS}, {', '.join(MEASURES[:_N_INT])}, cost, plain)"
_STAGE_SQL = (
    f"INSERT INTO {_STAGE} {_STAGE_COLS} SELECT ts_us - ts_us % {HOUR_US} AS bucket, {_DIM_COLS},"
    f" count(*), sum(status != 'ok'), sum(cost_usd IS NULL), sum(estimated != 0),"
    f" {', '.join(f'sum({t})' for t in TOKENS)},"
    f" sum(CASE WHEN cost_usd IS NULL THEN NULL ELSE {_SCALED} END), min({_PLAIN})"
    f" FROM {_E} WHERE rowid > ? GROUP BY bucket, {_DIM_COLS}"
)
_STAGE_ROWS_SQL = (
    f"INSERT INTO {_STAGE} {_STAGE_COLS} SELECT ts_us - ts_us % {HOUR_US}, {_DIM_COLS},"
    f" 1, status != 'ok', cost_usd IS NULL, estimated != 0, {', '.join(TOKENS)},"
    f" CASE WHEN cost_usd IS NULL THEN NULL ELSE {_SCALED} END, {_PLAIN}"
    f" FROM {_E} WHERE rowid > ?"
)
"""The stage of a write's batch: its events as they are (grouping them first costs more than it
saves when a batch holds few events per hour and dimensions; each cuboid groups them anyway)."""
_STAGE_FITTING_SQL = _STAGE_ROWS_SQL.replace(_PLAIN, "1")
"""The same, for events whose costs `fits` already said `_SCALED` reads exactly (`_PLAIN`'s
pattern matching, run on every row, was half the stage's cost)."""
_COLUMNS_SQL = (
    f"(bucket INTEGER, {_DIM_COLS}, {', '.join(MEASURES[:_N_INT])}, cost INTEGER, plain INTEGER, key TEXT)"
)
"""The temporary tables' columns; `key` (`rollups._key` of the cuboid's dimensions) is set in the
hour tables, once per row, and read by both grains' rows."""
_HOURLY = {"f": "stage", "m": "f", "tm": "stage", "u": "stage"}
"""The cuboids kept by hour, each summed by hour into a temporary table of its own from the
smallest one holding its dimensions (the model hours from the feature hours); their day rows are
summed from those, and the day rows of `all` from the stage (or, for a batch within one hour, from
its own hour table: then it costs less than grouping the stage by day, which costs less otherwise)."""
_TEMP = ("stage", *_HOURLY, "all")
_CREATE = [f"CREATE TEMP TABLE IF NOT EXISTS llmledger_rollup_{t} {_COLUMNS_SQL}" for t in _TEMP]
_CLEAR = [f"DELETE FROM temp.llmledger_rollup_{t}" for t in _TEMP]


def _picked(cuboid: str) -> str:
    return ", ".join(f'"{d}"' if d in CUBOIDS[cuboid] else f'NULL AS "{d}"' for d in DIMENSIONS)


def _hours_sql(cuboid: str) -> str:
    """Sum the cuboid's hours into its temporary table, each row with its key."""
    group = ", ".join(f'"{d}"' for d in CUBOIDS[cuboid])
    sums = ", ".join(f"sum({m})" for m in MEASURES[:_N_INT])
    return (
        f"INSERT INTO temp.llmledger_rollup_{cuboid} SELECT bucket, {_picked(cuboid)}, {sums}, sum(cost), 1,"
        f" llmledger_rollup_key('{cuboid}', {group})"
        f" FROM temp.llmledger_rollup_{_HOURLY.get(cuboid, 'stage')} GROUP BY bucket, {group}"
    )


def _text(c: str) -> str:
    """SQL for a scaled integer `c` (not NULL) back to its decimal text ("12.5", "0.000375", "-3")."""
    return (
        f"(CASE WHEN {c} < 0 THEN '-' ELSE '' END) || rtrim(rtrim(printf('%d.%0{SCALE_DIGITS}d',"
        f" abs({c}) / {_SCALE}, abs({c}) % {_SCALE}), '0'), '.')"
    )


_TEXT = f"CASE WHEN c IS NULL THEN NULL ELSE {_text('c')} END"
"""A scaled integer `c` back to its decimal text ("12.5", "0.000375", "-3")."""


def _insert_sql(cuboid: str, grain: int, one_hour: bool = False) -> str:
    """Add the cuboid's rows of one grain to the rollups. `one_hour`: every row of the batch lies in
    the same hour, so the cuboid's hour table holds each key once and its day rows need no grouping
    (the server's common case: a batch of events that just happened)."""
    dims = CUBOIDS[cuboid]
    key = ", ".join(f'"{d}"' for d in dims)
    columns = ", ".join(f'"{c}"' for c in ("grain", "bucket_us", "cuboid", "key", *DIMENSIONS, *MEASURES))
    adds = ", ".join(f'"{m}" = {_R}."{m}" + excluded."{m}"' for m in MEASURES[:_N_INT])
    cost = (
        f"cost_usd = CASE WHEN excluded.cost_usd IS NULL THEN {_R}.cost_usd"
        f" WHEN {_R}.cost_usd IS NULL THEN excluded.cost_usd"
        f" ELSE dadd({_R}.cost_usd, excluded.cost_usd) END"
    )
    measures = ", ".join(MEASURES[:_N_INT])
    sums = ", ".join(f"sum({m}) AS {m}" for m in MEASURES[:_N_INT])
    if cuboid not in _HOURLY and not one_hour:  # days only, from the stage (one row per event)
        inner = (
            f"SELECT bucket - bucket % {DAY_US} AS b, {_picked(cuboid)}, {sums}, sum(cost) AS c,"
            f" NULL AS k FROM {_STAGE} GROUP BY b, {key}"
        )
        named = f"llmledger_rollup_key('{cuboid}', {key})"
    else:  # the cuboid's table holds its hours, summed, with their keys
        source = f"temp.llmledger_rollup_{cuboid}"
        named = "k"
        if grain == HOUR_US:
            inner = f"SELECT bucket AS b, {_DIM_COLS}, {measures}, cost AS c, key AS k FROM {source}"
        elif one_hour:
            inner = (
                f"SELECT bucket - bucket % {DAY_US} AS b, {_DIM_COLS}, {measures}, cost AS c, key AS k"
                f" FROM {source}"
            )
        else:  # the key stands for the dimensions: the group's dimension values are its row's
            inner = (
                f"SELECT bucket - bucket % {DAY_US} AS b, {_DIM_COLS}, {sums}, sum(cost) AS c, key AS k"
                f" FROM {source} GROUP BY b, key"
            )
    return (
        f"INSERT INTO {_R} ({columns}) SELECT {grain}, b, '{cuboid}', {named}, {_DIM_COLS}, {measures},"
        f" {_TEXT} FROM ({inner}) WHERE true"
        f" ON CONFLICT (grain, cuboid, bucket_us, key) DO UPDATE SET {adds}, {cost}"
    )


_INSERTS = {
    one_hour: [
        *[_hours_sql(name) for name in (*_HOURLY, "all") if name in _HOURLY or one_hour],
        *[_insert_sql(name, grain, one_hour) for name in CUBOIDS for grain in GRAINS[name]],
    ]
    for one_hour in (False, True)
}
"""The statements that add the stage to the rollups, by "the stage lies in one hour"."""
_KEYS: dict[tuple[Any, ...], str] = {}


def _rollup_key(cuboid: str, *dims: str | None) -> str:
    found = _KEYS.get((cuboid, *dims))
    if found is None:
        found = _key(cuboid, dims)
        if len(_KEYS) > 200_000:
            _KEYS.clear()
        _KEYS[(cuboid, *dims)] = found
    return found


_READY = "llmledger_rollups_sql"


def _raw(conn: Connection) -> sqlite3.Connection:
    """The driver connection, with the key function registered once per connection: registering
    a function expires every statement SQLite has prepared on it (each write re-prepared the events
    insert and every rollup statement). The temporary tables are created in each transaction that
    uses them when missing (a rolled back transaction takes their creation with it)."""
    raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    info = conn.connection.info
    if info.get(_READY) is not raw:
        raw.create_function("llmledger_rollup_key", -1, _rollup_key, deterministic=True)
        info[_READY] = raw
    for sql in _CREATE:
        raw.execute(sql)
    return raw


def last_rowid(conn: Connection) -> int:
    """The highest rowid of the events (0 when none): events inserted after have higher ones."""
    return int(conn.exec_driver_sql(f"SELECT coalesce(max(rowid), 0) FROM {_E}").scalar_one())


def fits(costs: Iterable[Decimal | None]) -> bool:
    """Whether `_SCALED` reads each of these costs exactly once stored (`str(Decimal)`), as `_PLAIN`
    says of the stored text: no exponent, at most 12 fraction and 6 integer digits."""
    for cost in costs:
        if cost is not None:
            text = str(cost)
            whole, _, fraction = text.lstrip("-").partition(".")
            if "E" in text or len(fraction) > SCALE_DIGITS or len(whole) > _MAX_INT_DIGITS:
                return False
    return True


def add_since(conn: Connection, rowid: int, expected: int | None = None, fitting: bool = False) -> bool:
    """Add the events with a rowid above `rowid` (those the caller's transaction just inserted) to
    the rollups; `expected`: how many they must be. False: nothing written (a cost the integer sums
    cannot hold exactly, or not `expected` events): use the Python path. `fitting`: `fits` said
    True of these events' costs (the SQL then need not check them)."""
    raw = _raw(conn)  # its temporary tables are empty: each use clears them before it ends (finally)
    raw.execute("SAVEPOINT llmledger_rollups_sql")
    try:
        stage = _STAGE_SQL if expected is None else _STAGE_FITTING_SQL if fitting else _STAGE_ROWS_SQL
        raw.execute(stage, (rowid,))
        n, plain, hours = raw.execute(
            f"SELECT coalesce(sum(requests), 0), min(plain), count(DISTINCT bucket) FROM {_STAGE}"
        ).fetchone()
        if (expected is not None and n != expected) or plain == 0:
            raw.execute("ROLLBACK TO llmledger_rollups_sql")
            return False
        for sql in _INSERTS[hours == 1]:
            raw.execute(sql)
    except sqlite3.OperationalError as exc:
        raw.execute("ROLLBACK TO llmledger_rollups_sql")
        if "integer overflow" not in str(exc):
            raise
        return False
    finally:
        raw.execute("RELEASE llmledger_rollups_sql")
        for sql in _CLEAR:
            raw.execute(sql)
    return True


def rebuild(conn: Connection) -> bool:
    """Write every rollup row from all the events into an EMPTY rollups table; False: nothing
    written (see `add_since`)."""
    return add_since(conn, -(2**63))
