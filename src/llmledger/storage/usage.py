"""Usage reports: from the rollups whenever the grouping and filters allow, else from the events.

`usage()` splits the time range into pieces: whole UTC days read day rollups, whole hours at the
range's edges read hour rollups, and the minutes before the first / after the last whole hour read
the events (through the timestamp index, at most two hours of them). The widest cuboid (`all`)
keeps no hours (`rollups.GRAINS`): its hour pieces read the events too. Results are merged per
group and are identical to reading every event (a property test compares both paths). Grouping or
filtering by a column the rollups do not keep (tags, session, endpoint, status, ...), or a model
filter that must match `requested_model` (a deployment name, see `queries.ModelMatch`), reads the
events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.storage.queries import (
    SUM_COLUMNS,
    TIME_FORMATS,
    ModelMatch,
    UsageRow,
    group_expression,
    time_bucket,
    where_clause,
)
from llmledger.storage.rollups import CUBOIDS, DAY_US, GRAINS, HOUR_US, enabled
from llmledger.storage.rollups_sql import SUMS, scaled
from llmledger.storage.rows import from_us, to_us
from llmledger.storage.tables import events, rollups

__all__ = [
    "Acc",
    "add_acc",
    "cuboid_for",
    "grouped",
    "model_pairs",
    "pieces",
    "span_totals",
    "to_usage_rows",
    "usage_rows",
]

_LOWEST, _HIGHEST = -(2**62), 2**62
Piece = tuple[str, int, int]
"""("events" | "hour" | "day", first microsecond, end microsecond (exclusive))."""


def cuboid_for(group_by: Sequence[str], filters: Mapping[str, Any]) -> str | None:
    """The smallest cuboid that answers this grouping and these filters; None: read the events."""
    needed = set()
    for key in group_by:
        if key in TIME_FORMATS:
            continue
        needed.add(key)
    for name, value in filters.items():
        if value is None:
            continue
        if name == "tags":
            if value:
                return None
            continue
        if isinstance(value, ModelMatch) and value.requested:
            return None  # `requested_model` is not rolled up: the events answer it exactly
        needed.add(name)
    hourly = "hour" in group_by
    for name, dims in CUBOIDS.items():
        if needed <= set(dims) and (HOUR_US in GRAINS[name] or not hourly):
            return name
    return None


def _floor(us: int, size: int) -> int:
    return us - us % size


def _ceil(us: int, size: int) -> int:
    return -_floor(-us, size)


def pieces(since_us: int | None, until_us: int | None, *, hourly: bool = False) -> list[Piece]:
    """Split [since, until) into event, hour and day pieces (None: unbounded); `hourly`: no day
    pieces (a report grouped by hour)."""
    lo = _LOWEST if since_us is None else since_us
    hi = _HIGHEST if until_us is None else until_us
    if lo >= hi:
        return []
    lo_h = lo if since_us is None else _ceil(lo, HOUR_US)
    hi_h = hi if until_us is None else _floor(hi, HOUR_US)
    if lo_h >= hi_h:
        return [("events", lo, hi)]
    out: list[Piece] = []
    if lo < lo_h:
        out.append(("events", lo, lo_h))
    lo_d = lo_h if since_us is None else _ceil(lo_h, DAY_US)
    hi_d = hi_h if until_us is None else _floor(hi_h, DAY_US)
    if hourly:  # day rows cannot say which hour
        out.append(("hour", lo_h, hi_h))
    elif lo_d < hi_d:
        if lo_h < lo_d:
            out.append(("hour", lo_h, lo_d))
        out.append(("day", lo_d, hi_d))
        if hi_d < hi_h:
            out.append(("hour", hi_d, hi_h))
    else:
        out.append(("hour", lo_h, hi_h))
    if hi_h < hi:
        out.append(("events", hi_h, hi))
    return out


def _cost(dialect: str, column: Any, exact_ints: bool) -> list[Any]:
    """The cost aggregates of a query: PostgreSQL sums NUMERIC exactly; SQLite sums integer-scaled
    costs in C (`rollups_sql.SUMS`) or, when `exact_ints` is off, Decimal text with `dsum`."""
    if dialect != "sqlite":
        return [sa.func.sum(column).label("cost_usd")]
    if not exact_ints:
        return [sa.func.dsum(column).label("cost_usd")]
    return [
        sa.literal_column(sql).label(name)
        for sql, name in zip(SUMS, ("cost_i", "cost_d", "cost_ok"), strict=True)
    ]


def _within(grain: Any, bucket: Any, parts: Sequence[Piece]) -> Any:
    """Rows of the rollup pieces `parts` (one condition: one query for all of them)."""
    return sa.or_(
        *[
            sa.and_(grain == (HOUR_US if kind == "hour" else DAY_US), bucket >= lo, bucket < hi)
            for kind, lo, hi in parts
        ]
    )


def _rollup_query(
    conn: Connection,
    cuboid: str,
    parts: Sequence[Piece],
    group_by: Sequence[str],
    filters: Mapping[str, Any],
    int_sum: Any,
    exact_ints: bool,
    by_bucket: bool = False,
) -> list[Any]:
    dialect = conn.dialect.name
    keys = [
        (time_bucket(rollups.c.bucket_us, k, dialect) if k in TIME_FORMATS else rollups.c[k]).label(f"g{i}")
        for i, k in enumerate(group_by)
    ]
    if by_bucket:
        keys += [rollups.c.grain.label("grain"), rollups.c.bucket_us.label("bucket")]
    query = sa.select(
        *keys,
        int_sum(rollups.c.requests).label("requests"),
        *[sa.func.coalesce(int_sum(rollups.c[c]), 0).label(c) for c in SUM_COLUMNS],
        *_cost(dialect, rollups.c.cost_usd, exact_ints),
        int_sum(rollups.c.unpriced).label("unpriced"),
        int_sum(rollups.c.errors).label("errors"),
        int_sum(rollups.c.estimated).label("estimated"),
    ).where(rollups.c.cuboid == cuboid, _within(rollups.c.grain, rollups.c.bucket_us, parts))
    for name, value in filters.items():
        if value is None or name == "tags":
            continue
        column = rollups.c[name]
        if isinstance(value, ModelMatch):  # names only (`cuboid_for` sends `requested` to the events)
            value = value.names
        query = query.where(column == value if isinstance(value, str) else column.in_(list(value)))
    if keys:
        query = query.group_by(*keys)
    return list(conn.execute(query).mappings())


def _event_query(
    conn: Connection,
    parts: Sequence[Piece] | None,
    group_by: Sequence[str],
    filters: Mapping[str, Any],
    since: datetime | None,
    until: datetime | None,
    int_sum: Any,
    exact_ints: bool,
) -> list[Any]:
    """`parts`: event pieces read in one query (else [since, until))."""
    dialect = conn.dialect.name
    keys = [group_expression(key, dialect).label(f"g{i}") for i, key in enumerate(group_by)]
    query = sa.select(
        *keys,
        sa.func.count().label("requests"),
        *[sa.func.coalesce(int_sum(events.c[c]), 0).label(c) for c in SUM_COLUMNS],
        *_cost(dialect, events.c.cost_usd, exact_ints),
        sa.func.sum(sa.case((events.c.cost_usd.is_(None), 1), else_=0)).label("unpriced"),
        sa.func.sum(sa.case((events.c.status != "ok", 1), else_=0)).label("errors"),
        sa.func.sum(sa.case((events.c.estimated, 1), else_=0)).label("estimated"),
    )
    if parts is None:
        query = query.where(*where_clause(filters, since, until))
    else:
        spans = [sa.and_(events.c.ts_us >= lo, events.c.ts_us < hi) for _, lo, hi in parts]
        query = query.where(*where_clause(filters, None, None), sa.or_(*spans))
    if keys:
        query = query.group_by(*keys)
    return list(conn.execute(query).mappings())


Acc = list[Any]
"""requests, the SUM_COLUMNS, unpriced, errors, estimated, then the cost (Decimal or None)."""


def _acc(r: Mapping[str, Any]) -> Acc:
    if "cost_i" in r:
        cost = scaled(r["cost_i"], r["cost_d"])
    else:
        cost = Decimal(str(r["cost_usd"])) if r["cost_usd"] is not None else None
    return [
        int(r["requests"]),
        *(int(r[c] or 0) for c in SUM_COLUMNS),
        int(r["unpriced"] or 0),
        int(r["errors"] or 0),
        int(r["estimated"] or 0),
        cost,
    ]


def add_acc(into: Acc, acc: Acc) -> None:
    for i in range(len(into) - 1):
        into[i] += acc[i]
    if acc[-1] is not None:
        into[-1] = acc[-1] if into[-1] is None else into[-1] + acc[-1]


def _exactly(conn: Connection, run: Any) -> list[Any]:
    """`run(int_sum, exact_ints)`'s rows, summed exactly: integer-scaled costs when every cost
    allows (else `dsum`), 64-bit counts unless a ledger written by an older version holds larger
    ones (SQLite raises "integer overflow": then sum those in Python)."""
    sqlite = conn.dialect.name == "sqlite"
    try:
        result: list[Any] = run(sa.func.sum, sqlite)
        if not sqlite or all(r["cost_ok"] != 0 for r in result):
            return result
        return list(run(sa.func.sum, False))
    except sa.exc.OperationalError as exc:
        if not sqlite or "integer overflow" not in str(exc):
            raise
        return list(run(sa.func.isum, False))


def grouped(
    conn: Connection,
    group_by: Sequence[str],
    filters: Mapping[str, Any],
    since: datetime | None,
    until: datetime | None,
    use_rollups: bool,
) -> dict[tuple[Any, ...], Acc]:
    """Group key tuple -> measures (`Acc`), from the rollups (one query for all their pieces) and
    the events (one query for the pieces the rollups do not hold)."""
    cuboid = cuboid_for(group_by, filters) if use_rollups and enabled(conn) else None
    since_us = None if since is None else to_us(since)
    until_us = None if until is None else to_us(until)

    def run(int_sum: Any, exact_ints: bool) -> list[Any]:
        if cuboid is None:
            return _event_query(conn, None, group_by, filters, since, until, int_sum, exact_ints)
        hours = HOUR_US in GRAINS[cuboid]
        parts = pieces(since_us, until_us, hourly="hour" in group_by)
        scan = [p for p in parts if p[0] == "events" or (p[0] == "hour" and not hours)]
        kept = [p for p in parts if p not in scan]
        out: list[Any] = []
        if scan:  # the edges' minutes, and hours the cuboid does not keep
            out += _event_query(conn, scan, group_by, filters, None, None, int_sum, exact_ints)
        if kept:
            out += _rollup_query(conn, cuboid, kept, group_by, filters, int_sum, exact_ints)
        return out

    merged: dict[tuple[Any, ...], Acc] = {}
    for r in _exactly(conn, run):
        if not r["requests"]:
            continue
        key = tuple(r[f"g{i}"] for i in range(len(group_by)))
        have = merged.get(key)
        if have is None:
            merged[key] = _acc(r)
        else:
            add_acc(have, _acc(r))
    return merged


def to_usage_rows(
    group_by: Sequence[str], merged: Mapping[tuple[Any, ...], Acc]
) -> tuple[list[UsageRow], dict[tuple[Any, ...], int]]:
    """`UsageRow`s (most expensive first) and estimated-event counts per group key tuple."""
    rows = []
    estimated: dict[tuple[Any, ...], int] = {}
    n = len(SUM_COLUMNS)
    for key, tot in merged.items():
        rows.append(
            UsageRow(
                group=dict(zip(group_by, key, strict=True)),
                requests=tot[0],
                **dict(zip(SUM_COLUMNS, tot[1 : 1 + n], strict=True)),
                cost_usd=tot[-1] if tot[-1] is not None else Decimal(0),
                unpriced_requests=tot[1 + n],
                errors=tot[2 + n],
            )
        )
        estimated[key] = tot[3 + n]
    rows.sort(key=lambda row: (-row.cost_usd, -row.requests, tuple(str(g) for g in row.group.values())))
    return rows, estimated


def usage_rows(
    conn: Connection,
    group_by: Sequence[str],
    filters: Mapping[str, Any],
    since: datetime | None,
    until: datetime | None,
    *,
    use_rollups: bool = True,
) -> tuple[list[UsageRow], dict[tuple[Any, ...], int]]:
    """Usage rows (most expensive first) and estimated-event counts per group key tuple.

    `filters` are validated by the caller (`where_clause`) and model names already widened.
    """
    return to_usage_rows(group_by, grouped(conn, group_by, filters, since, until, use_rollups))


def span_totals(conn: Connection, filters: Mapping[str, Any], spans: Sequence[tuple[int, int]]) -> list[Acc]:
    """The totals (`Acc`) of each [since_us, until_us) span, in one rollup query for all of them
    (rows by bucket, summed per span in Python; the dashboard's periods overlap)."""
    cuboid = cuboid_for((), filters) if enabled(conn) else None
    empty: Acc = [0] * (len(SUM_COLUMNS) + 4) + [None]
    if cuboid is None:
        out = []
        for lo, hi in spans:
            found = grouped(conn, (), filters, from_us(lo), from_us(hi), False)
            out.append(found.get((), list(empty)))
        return out
    hours = HOUR_US in GRAINS[cuboid]
    split = [pieces(lo, hi) for lo, hi in spans]
    wanted = sorted({p for parts in split for p in parts if p[0] != "events" and (hours or p[0] == "day")})
    scans = sorted({p for parts in split for p in parts} - set(wanted))

    def run(int_sum: Any, exact_ints: bool) -> list[Any]:
        rows = _rollup_query(conn, cuboid, wanted, (), filters, int_sum, exact_ints, True) if wanted else []
        return rows + [
            {**r, "grain": 0, "bucket": i}  # an event piece: summed whole
            for i, p in enumerate(scans)
            for r in _event_query(conn, [p], (), filters, None, None, int_sum, exact_ints)
        ]

    rows = [(int(r["grain"]), int(r["bucket"]), _acc(r)) for r in _exactly(conn, run) if r["requests"]]
    out = []
    for parts in split:
        total = list(empty)
        for grain, bucket, acc in rows:
            if grain == 0:  # the event piece `scans[bucket]`
                hit = scans[bucket] in parts
            else:
                hit = any(grain == _GRAIN[kind] and lo <= bucket < hi for kind, lo, hi in parts)
            if hit:
                add_acc(total, acc)
        out.append(total)
    return out


_GRAIN = {"hour": HOUR_US, "day": DAY_US, "events": -1}


def model_pairs(conn: Connection) -> list[tuple[str, str]] | None:
    """Every (provider, model) the ledger holds, from the model rollups (not a scan of the events);
    None when no rollups are kept (`rollups.enabled`)."""
    if not enabled(conn):
        return None
    query = (
        sa.select(rollups.c.provider, rollups.c.model)
        .where(rollups.c.grain == DAY_US, rollups.c.cuboid == "m")
        .distinct()
    )
    return [(str(p), str(m)) for p, m in conn.execute(query)]
