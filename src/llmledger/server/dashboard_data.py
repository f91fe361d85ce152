"""What the dashboard shows, computed from one engine: overview figures, series, top lists, alerts.

Every figure comes from `llmledger.storage.usage` (rollups whenever the filters allow), so its cost
grows with groups and time buckets, not with events; the overview asks for all its figures in a
handful of queries (see `overview`). Money is returned as decimal strings. Functions here are
plain (no HTTP): routes call them in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from llmledger.engine import Engine
from llmledger.storage.queries import SUM_COLUMNS, UsageRow, same_models, where_clause
from llmledger.storage.rollups import DAY_US
from llmledger.storage.rows import from_us, to_us
from llmledger.storage.tables import alerts, rollups
from llmledger.storage.usage import Acc, add_acc, grouped, model_pairs, span_totals, to_usage_rows

__all__ = ["STACKS", "alerts_since", "bucket_for", "overview", "subject_parts", "unpriced_models"]

STACKS = ("model", "provider", "tenant", "feature", "user")
"""What the spend series can be stacked by."""
BUCKETS = ("hour", "day", "month")
_TOP = 10
_SERIES_STACKS = 8


def _money(value: Decimal) -> str:
    return f"{value:f}"


def _change(now: Decimal, before: Decimal) -> str | None:
    """The relative change in percent, one decimal ("12.5"); None when there was nothing before."""
    if before == 0:
        return None
    return f"{(now - before) * 100 / before:.1f}"


def bucket_for(since: datetime, until: datetime) -> str:
    """A sensible series bucket for a range: hours up to 3 days, days up to 120 days, else months."""
    span = until - since
    if span <= timedelta(days=3):
        return "hour"
    return "day" if span <= timedelta(days=120) else "month"


class _Reader:
    """Usage queries on one connection, with model filters widened once."""

    def __init__(self, engine: Engine, filters: Mapping[str, Any]) -> None:
        self.engine = engine
        self.conn = engine.ledger.engine.connect()
        self.filters = same_models(self.conn, filters, pairs=model_pairs(self.conn))
        where_clause(self.filters, None, None)  # raises InvalidQueryError for a bad filter

    def grouped(self, keys: Sequence[str], since: datetime, until: datetime) -> dict[tuple[Any, ...], Acc]:
        return grouped(self.conn, keys, self.filters, since, until, True)

    def close(self) -> None:
        self.conn.close()


def whole_hours(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """[since, until) widened to whole UTC hours, so it is answered by rollups alone (no event
    scan at its edges): the dashboard's ranges are hours, the current one up to now."""
    start = since.replace(minute=0, second=0, microsecond=0)
    end = until.replace(minute=0, second=0, microsecond=0)
    if end < until:
        end += timedelta(hours=1)
    return start, end


def _periods(now: datetime) -> dict[str, tuple[tuple[datetime, datetime], tuple[datetime, datetime]]]:
    """Today, month to date and the last 30 days, each with the period before it."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # periods end with the current hour (what the ledger holds of it is "up to now")
    now = whole_hours(now, now)[1]
    month = day.replace(day=1)
    previous_month = (month - timedelta(days=1)).replace(day=1)
    into_month = now - month
    return {
        "today": ((day, now), (day - timedelta(days=1), now - timedelta(days=1))),
        "month_to_date": ((month, now), (previous_month, min(previous_month + into_month, month))),
        "last_30_days": (
            (now - timedelta(days=30), now),
            (now - timedelta(days=60), now - timedelta(days=30)),
        ),
    }


def _kpis(periods: Mapping[str, Any], totals: Sequence[Acc]) -> dict[str, Any]:
    out = {}
    for i, (name, ((a, _), (c, d))) in enumerate(periods.items()):
        spend, before = totals[2 * i][-1] or Decimal(0), totals[2 * i + 1][-1] or Decimal(0)
        out[name] = {
            "spend_usd": _money(spend),
            "previous_usd": _money(before),
            "change_pct": _change(spend, before),
            "since": a.isoformat(),
            "previous_since": c.isoformat(),
            "previous_until": d.isoformat(),
        }
    return out


def _row(row: UsageRow, key: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {} if key is None else {key: row.group.get(key)}
    out.update(
        requests=row.requests,
        cost_usd=_money(row.cost_usd),
        errors=row.errors,
        unpriced=row.unpriced_requests,
        **{c: getattr(row, c) for c in SUM_COLUMNS},
    )
    return out


def _series(found: Sequence[UsageRow], bucket: str, stack: str) -> dict[str, Any]:
    totals: dict[str | None, Decimal] = {}
    for r in found:
        name = r.group[stack]
        totals[name] = totals.get(name, Decimal(0)) + r.cost_usd
    ranked = sorted(totals, key=lambda n: (-totals[n], str(n)))
    kept = ranked[:_SERIES_STACKS]
    labels = sorted({str(r.group[bucket]) for r in found})
    index = {b: i for i, b in enumerate(labels)}
    names = [*(("(none)" if n is None else n) for n in kept)]
    if len(ranked) > len(kept):
        names.append("(other)")
    values = {name: [Decimal(0)] * len(labels) for name in names}
    requests = [0] * len(labels)
    for r in found:
        name = r.group[stack]
        label = ("(none)" if name is None else name) if name in kept else "(other)"
        i = index[str(r.group[bucket])]
        values[label][i] += r.cost_usd
        requests[i] += r.requests
    return {
        "bucket": bucket,
        "stack": stack,
        "labels": labels,
        "stacks": [{"name": n, "cost_usd": [_money(v) for v in values[n]]} for n in names],
        "requests": requests,
    }


def _fold(by_bucket: Mapping[tuple[Any, ...], Acc]) -> dict[tuple[Any, ...], Acc]:
    """(bucket, value) groups summed over the buckets: value -> measures."""
    out: dict[tuple[Any, ...], Acc] = {}
    for (_, value), acc in by_bucket.items():
        have = out.get((value,))
        if have is None:
            out[(value,)] = list(acc)
        else:
            add_acc(have, acc)
    return out


def overview(
    engine: Engine,
    filters: Mapping[str, Any],
    since: datetime,
    until: datetime,
    *,
    bucket: str | None = None,
    stack: str = "model",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The overview page's figures for the filters and [since, until): spend today / month to date
    / last 30 days with the change against the period before; the spend series stacked by `stack`;
    top tenants, users, features and models; totals (requests, tokens by kind, errors, unpriced,
    estimated). Raises `InvalidQueryError` for a bad filter, bucket or stack."""
    from llmledger.errors import InvalidQueryError

    if stack not in STACKS:
        raise InvalidQueryError(f"stack must be one of {', '.join(STACKS)}, got {stack!r:.40}")
    if bucket is not None and bucket not in BUCKETS:
        raise InvalidQueryError(f"bucket must be one of {', '.join(BUCKETS)}, got {bucket!r:.40}")
    now = now or datetime.now(timezone.utc)
    since, until = whole_hours(since, until)
    bucket = bucket or bucket_for(since, until)
    reader = _Reader(engine, filters)
    try:
        # one rollup query for every period's total (rows by bucket, summed per period here), one
        # for the series (whose stack's top list it also gives), one per other top list
        periods = _periods(now)
        spans = [span for pair in periods.values() for span in pair] + [(since, until)]
        totals = span_totals(reader.conn, reader.filters, [(to_us(a), to_us(b)) for a, b in spans])
        by_bucket = reader.grouped((bucket, stack), since, until)
        series, _ = to_usage_rows((bucket, stack), by_bucket)
        whole, estimated = to_usage_rows((), {(): totals[-1]} if totals[-1][0] else {})
        total = whole[0] if whole else None
        out: dict[str, Any] = {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "kpis": _kpis(periods, totals),
            "totals": {
                **(_row(total) if total else _row(_EMPTY)),
                "estimated": estimated.get((), 0),
                "error_rate": f"{total.errors / total.requests:.4f}" if total else "0",
            },
            "series": _series(series, bucket, stack),
            "top": {},
        }
        for key in ("tenant", "user", "feature", "model"):
            found = _fold(by_bucket) if key == stack else reader.grouped((key,), since, until)
            top, _ = to_usage_rows((key,), found)
            out["top"][key] = [_row(r, key) for r in top[:_TOP]]
        return out
    finally:
        reader.close()


_EMPTY = UsageRow({}, 0, 0, 0, 0, 0, 0, Decimal(0), 0, 0)


def unpriced_models(engine: Engine, tenant: str | None = None) -> list[dict[str, Any]]:
    """Every (provider, model) with unpriced events, with how many (from the rollups: cuboid `tm`
    when a tenant is given, else `m`), most first."""
    cuboid = "tm" if tenant is not None else "m"
    query = (
        sa.select(rollups.c.provider, rollups.c.model, sa.func.sum(rollups.c.unpriced).label("n"))
        .where(rollups.c.grain == DAY_US, rollups.c.cuboid == cuboid)
        .group_by(rollups.c.provider, rollups.c.model)
        .having(sa.func.sum(rollups.c.unpriced) > 0)
    )
    if tenant is not None:
        query = query.where(rollups.c.tenant == tenant)
    with engine.ledger.engine.connect() as conn:
        found = [{"provider": p, "model": m, "events": int(n)} for p, m, n in conn.execute(query)]
    return sorted(found, key=lambda r: (-r["events"], r["provider"], r["model"]))


def subject_parts(subject: str) -> dict[str, str]:
    """`tenant=acme&user=u1` -> {"tenant": "acme", "user": "u1"} (a limit's counter subject)."""
    return dict(part.partition("=")[::2] for part in subject.split("&") if "=" in part)


def alerts_since(
    engine: Engine, since: datetime, tenant: str | None = None, most: int = 50
) -> list[dict[str, Any]]:
    """Threshold alerts fired at or after `since`, newest first (a tenant-bound reader sees those
    whose subject names its tenant, or whose limit is scoped to it)."""
    query = sa.select(alerts).where(alerts.c.fired_us >= to_us(since)).order_by(alerts.c.fired_us.desc())
    out = []
    with engine.ledger.engine.connect() as conn:
        limits = {limit.id: limit for limit in engine.ledger.limits.load()[1]}
        for r in conn.execute(query.limit(most * 4)).mappings():
            limit = limits.get(r["limit_id"])
            scope = dict(limit.scope) if limit is not None else {}
            if (
                tenant is not None
                and scope.get("tenant") != tenant
                and subject_parts(r["subject"]).get("tenant") != tenant
            ):
                continue
            out.append(
                {
                    "limit_id": r["limit_id"],
                    "name": limit.name if limit is not None else None,
                    "subject": r["subject"],
                    "threshold": r["threshold"],
                    "fired_at": from_us(r["fired_us"]).isoformat(),
                }
            )
            if len(out) >= most:
                break
    return out
