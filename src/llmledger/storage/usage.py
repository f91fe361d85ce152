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
    cost_sum,
    group_expression,
    time_bucket,
    where_clause,
)
from llmledger.storage.rollups import CUBOIDS, DAY_US, GRAINS, HOUR_US, enabled
from llmledger.storage.rows import from_us, to_us
from llmledger.storage.tables import events, rollups

__all__ = ["cuboid_for", "model_pairs", "pieces", "usage_rows"]

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


def _rollup_query(
    conn: Connection,
    cuboid: str,
    piece: Piece,
    group_by: Sequence[str],
    filters: Mapping[str, Any],
    int_sum: Any,
) -> list[Any]:
    dialect = conn.dialect.name
    kind, lo, hi = piece
    keys = [
        (time_bucket(rollups.c.bucket_us, k, dialect) if k in TIME_FORMATS else rollups.c[k]).label(f"g{i}")
        for i, k in enumerate(group_by)
    ]
    cost = sa.func.dsum(rollups.c.cost_usd) if dialect == "sqlite" else sa.func.sum(rollups.c.cost_usd)
    query = sa.select(
        *keys,
        int_sum(rollups.c.requests).label("requests"),
        *[sa.func.coalesce(int_sum(rollups.c[c]), 0).label(c) for c in SUM_COLUMNS],
        cost.label("cost_usd"),
        int_sum(rollups.c.unpriced).label("unpriced"),
        int_sum(rollups.c.errors).label("errors"),
        int_sum(rollups.c.estimated).label("estimated"),
    ).where(
        rollups.c.grain == (HOUR_US if kind == "hour" else DAY_US),
        rollups.c.cuboid == cuboid,
        rollups.c.bucket_us >= lo,
        rollups.c.bucket_us < hi,
    )
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
    piece: Piece | None,
    group_by: Sequence[str],
    filters: Mapping[str, Any],
    since: datetime | None,
    until: datetime | None,
    int_sum: Any,
) -> list[Any]:
    dialect = conn.dialect.name
    if piece is not None:
        since, until = from_us(piece[1]), from_us(piece[2])
    keys = [group_expression(key, dialect).label(f"g{i}") for i, key in enumerate(group_by)]
    query = sa.select(
        *keys,
        sa.func.count().label("requests"),
        *[sa.func.coalesce(int_sum(events.c[c]), 0).label(c) for c in SUM_COLUMNS],
        cost_sum(dialect).label("cost_usd"),
        sa.func.sum(sa.case((events.c.cost_usd.is_(None), 1), else_=0)).label("unpriced"),
        sa.func.sum(sa.case((events.c.status != "ok", 1), else_=0)).label("errors"),
        sa.func.sum(sa.case((events.c.estimated, 1), else_=0)).label("estimated"),
    ).where(*where_clause(filters, since, until))
    if keys:
        query = query.group_by(*keys)
    return list(conn.execute(query).mappings())


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
    cuboid = cuboid_for(group_by, filters) if use_rollups and enabled(conn) else None
    since_us = None if since is None else to_us(since)
    until_us = None if until is None else to_us(until)

    def run(int_sum: Any) -> list[Any]:
        if cuboid is None:
            return _event_query(conn, None, group_by, filters, since, until, int_sum)
        out: list[Any] = []
        hours = HOUR_US in GRAINS[cuboid]
        for piece in pieces(since_us, until_us, hourly="hour" in group_by):
            if piece[0] == "events" or (piece[0] == "hour" and not hours):  # hours it does not keep
                out += _event_query(conn, piece, group_by, filters, None, None, int_sum)
            else:
                out += _rollup_query(conn, cuboid, piece, group_by, filters, int_sum)
        return out

    try:
        result = run(sa.func.sum)
    except sa.exc.OperationalError as exc:
        # Counts are bounded (`MAX_TOKENS`), so sums fit 64 bits; a ledger written by an older
        # version may hold larger ones: sum those exactly in Python rather than fail.
        if conn.dialect.name != "sqlite" or "integer overflow" not in str(exc):
            raise
        result = run(sa.func.isum)
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for r in result:
        if not r["requests"]:
            continue
        key = tuple(r[f"g{i}"] for i in range(len(group_by)))
        cost = Decimal(str(r["cost_usd"])) if r["cost_usd"] is not None else None
        values = [
            int(r["requests"]),
            *(int(r[c] or 0) for c in SUM_COLUMNS),
            int(r["unpriced"] or 0),
            int(r["errors"] or 0),
            int(r["estimated"] or 0),
        ]
        have = merged.get(key)
        if have is None:
            merged[key] = [*values, cost]
        else:
            for i, v in enumerate(values):
                have[i] += v
            if cost is not None:
                have[-1] = cost if have[-1] is None else have[-1] + cost
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
