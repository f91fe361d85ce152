"""Validated filters, group-by keys and aggregates for ledger queries (SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from llmledger.errors import InvalidQueryError
from llmledger.events.schema import STATUSES
from llmledger.identity import known_model, model_identity
from llmledger.storage.rows import to_us
from llmledger.storage.tables import events

__all__ = [
    "FILTER_COLUMNS",
    "FLAG_FILTERS",
    "GROUP_KEYS",
    "ModelMatch",
    "UsageRow",
    "group_expression",
    "same_models",
    "tag_pairs",
    "text_filters",
    "where_clause",
]

FILTER_COLUMNS: tuple[str, ...] = (
    "provider",
    "model",
    "requested_model",
    "endpoint",
    "service_tier",
    "status",
    "cost_source",
    "tenant",
    "user",
    "org",
    "feature",
    "agent",
    "session",
)
"""Columns `events()`, `usage()` and `spend()` filter on (plus `tags={...}`)."""

GROUP_KEYS: tuple[str, ...] = (*FILTER_COLUMNS, "hour", "day", "month")
"""What `usage(group_by=...)` accepts, plus `tag:<name>` for one tag's values."""

SUM_COLUMNS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a usage report: its key values, request count, token sums and exact cost."""

    group: Mapping[str, str | None]
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal
    unpriced_requests: int
    errors: int

    def __getitem__(self, key: str) -> Any:
        """`row["tenant"]` reads a group key; other names read the row's fields."""
        if key in self.group:
            return self.group[key]
        return getattr(self, key)

    def __getattr__(self, name: str) -> str | None:
        """`row.tenant`, `row.model`, `row.day`: a group key as an attribute (`tag:<name>` keys are
        read as `row["tag:plan"]`). Raises AttributeError for a key the report is not grouped by."""
        if not name.startswith("__"):
            group = object.__getattribute__(self, "group")
            if name in group:
                value: str | None = group[name]
                return value
        raise AttributeError(
            f"UsageRow has no field or group key {name!r} (grouped by: {', '.join(self.group)})"
        )


@dataclass(frozen=True, slots=True)
class ModelMatch:
    """A widened `model` filter: events whose `model` is one of `names`, or whose
    `requested_model` is one of `requested` (names no alias or catalogue entry knows)."""

    names: tuple[str, ...]
    requested: tuple[str, ...]

    def clause(self) -> ColumnElement[bool]:
        """The SQL condition."""
        found = events.c.model.in_(list(self.names))
        if not self.requested:
            return found
        return sa.or_(found, events.c.requested_model.in_(list(self.requested)))


def same_models(
    conn: Connection, filters: Mapping[str, Any], pairs: Iterable[tuple[str, str]] | None = None
) -> Mapping[str, Any]:
    """`filters` with a `model` filter widened to every stored name of the same model identity
    (`model="gpt-4o-mini"` also finds `gpt-4o-mini-2024-07-18`; see `llmledger.identity`), and to
    the calls that requested a name no alias or catalogue entry knows (an Azure deployment).
    `pairs`: the stored (provider, model) pairs when known (default: read from the events)."""
    value = filters.get("model")
    wanted = [value] if isinstance(value, str) else value
    if not isinstance(wanted, Sequence) or not all(isinstance(v, str) for v in wanted):
        return filters  # None, or a bad value that `where_clause` reports
    names = set(wanted)
    requested: set[str] = set()
    if pairs is None:
        pairs = conn.execute(sa.select(events.c.provider, events.c.model).distinct()).tuples()
    for provider, model in pairs:
        if model not in names:
            identity = model_identity(model, provider)
            if any(identity == model_identity(v, provider) for v in wanted):
                names.add(model)
        requested.update(v for v in wanted if not known_model(v, provider))
    return {**filters, "model": ModelMatch(tuple(sorted(names)), tuple(sorted(requested)))}


def where_clause(
    filters: Mapping[str, Any], since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    """SQL conditions for column filters, `tags={...}` and a [since, until) time range."""
    clauses: list[ColumnElement[bool]] = []
    for name, value in filters.items():
        if name in FLAG_FILTERS:
            clauses.extend(_flag(name, value))
            continue
        if name == "tags":
            if not isinstance(value, Mapping):
                raise InvalidQueryError("tags filter must be a dict of tag name to value")
            for tag, tag_value in value.items():
                clauses.append(events.c.tags[str(tag)].as_string() == str(tag_value))
            continue
        if name not in FILTER_COLUMNS:
            raise InvalidQueryError(
                f"unknown filter {name!r}; filter on: {', '.join(FILTER_COLUMNS)}, tags, unpriced, estimated"
            )
        column = events.c[name]
        if value is None:
            continue
        if isinstance(value, ModelMatch):
            clauses.append(value.clause())
            continue
        if name == "status" and any(
            not isinstance(v, str) or v not in STATUSES
            for v in (value if isinstance(value, (list, tuple, set, frozenset)) else [value])
        ):
            raise InvalidQueryError(f"status filter takes {', '.join(sorted(STATUSES))}, got {value!r}")
        if isinstance(value, str):
            clauses.append(column == value)
        elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
            clauses.append(column.in_(list(value)))
        else:
            raise InvalidQueryError(f"filter {name!r} takes a string or a list of strings, got {value!r}")
    if since is not None:
        clauses.append(events.c.ts_us >= to_us(since))
    if until is not None:
        clauses.append(events.c.ts_us < to_us(until))
    return clauses


def tag_pairs(
    items: Sequence[str] | None, sep: str, *, empty_values: bool = True, message: str | None = None
) -> dict[str, str]:
    """Tag filters written `name<sep>value` (`plan:free` on the API, `plan=free` on the command
    line) as a dict. Raises InvalidQueryError naming the first malformed item (`message`: its
    text, with `{item}` for the item)."""
    pairs: dict[str, str] = {}
    for item in items or []:
        name, found, value = item.partition(sep)
        if not found or not name.strip() or not (value or empty_values):
            text = message or "tag filter {item} must be name" + sep + "value"
            raise InvalidQueryError(text.format(item=repr(item)))
        pairs[name.strip()] = value
    return pairs


def text_filters(
    labels: Mapping[str, str | Sequence[str] | None], tags: Sequence[str] | None, *, tag_sep: str = ":"
) -> dict[str, Any]:
    """The filters of text labels (one value, several: any of them, None or none: no filter) and
    tag items (`tag_pairs`), as `where_clause` takes them: the one parser of the API's query
    parameters and the command line's options. Raises InvalidQueryError for an unknown label."""
    out: dict[str, Any] = {}
    for name, value in labels.items():
        if name not in FILTER_COLUMNS:
            raise InvalidQueryError(f"unknown filter {name!r}; filter on: {', '.join(FILTER_COLUMNS)}")
        if value is None or (not isinstance(value, str) and not value):
            continue
        out[name] = value if isinstance(value, str) else value[0] if len(value) == 1 else list(value)
    pairs = tag_pairs(tags, tag_sep)
    if pairs:
        out["tags"] = pairs
    return out


FLAG_FILTERS = ("unpriced", "estimated")
"""Yes/no filters: `unpriced=True` (no cost), `estimated=True` (usage estimated, not reported)."""


def _flag(name: str, value: Any) -> list[ColumnElement[bool]]:
    if value is None:
        return []
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise InvalidQueryError(f"filter {name!r} takes true or false, got {value!r:.40}")
    if name == "unpriced":
        return [events.c.cost_usd.is_(None) if value else events.c.cost_usd.is_not(None)]
    return [events.c.estimated.is_(value)]


def group_expression(key: str, dialect: str) -> ColumnElement[Any]:
    """The SQL expression grouping by `key` (a column, `day`, `month` or `tag:<name>`)."""
    if key in FILTER_COLUMNS:
        return events.c[key]
    if key.startswith("tag:") and len(key) > 4:
        tag: ColumnElement[Any] = events.c.tags[key[4:]].as_string()
        return tag
    if key in TIME_FORMATS:
        return time_bucket(events.c.ts_us, key, dialect)
    raise InvalidQueryError(f"cannot group by {key!r}; use {', '.join(GROUP_KEYS)} or tag:<name>")


TIME_FORMATS = {
    "hour": ("%Y-%m-%dT%H:00", 'YYYY-MM-DD"T"HH24:"00"'),
    "day": ("%Y-%m-%d", "YYYY-MM-DD"),
    "month": ("%Y-%m", "YYYY-MM"),
}
"""Group keys of time buckets (UTC) -> (SQLite strftime, PostgreSQL to_char) formats."""


def time_bucket(column: ColumnElement[Any], key: str, dialect: str) -> ColumnElement[Any]:
    """The UTC hour (`2026-03-30T21:00`), day (`2026-03-30`) or month (`2026-03`) of a column of
    microseconds since the epoch, as text."""
    sqlite_fmt, pg_fmt = TIME_FORMATS[key]
    if dialect == "sqlite":
        return sa.func.strftime(sqlite_fmt, sa.cast(column / 1_000_000, sa.Integer), "unixepoch")
    utc = sa.func.timezone("UTC", sa.func.to_timestamp(column / 1_000_000.0))
    expression: ColumnElement[Any] = sa.func.to_char(utc, pg_fmt)
    return expression


def cost_sum(dialect: str) -> ColumnElement[Any]:
    """The exact sum of `cost_usd` (Decimal on SQLite through the `dsum` aggregate)."""
    return sa.func.dsum(events.c.cost_usd) if dialect == "sqlite" else sa.func.sum(events.c.cost_usd)
