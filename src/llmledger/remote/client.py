"""`llmledger.Client`: track usage on a llmledger server and get the priced event back at once; read
usage, events and spend from it. For teams that track by hand (any framework, any process) and want
the shape hosted metering SDKs have.

```python
client = llmledger.Client("http://127.0.0.1:8787", api_key="llk_...")
event = client.track(provider="openai", model="gpt-4o-mini", input_tokens=1200, output_tokens=80,
                     tenant="acme")
print(event.cost_usd, client.spend(tenant="acme", since="30d"))
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from llmledger._time import TimeBound, parse_time_bound
from llmledger.attribution.context import current_attribution
from llmledger.errors import InvalidEventError, InvalidUsageError, ServerError, ValidationError
from llmledger.events.event import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.events.schema import ATTRIBUTION_FIELDS, SCHEMA_VERSION
from llmledger.remote.http import HttpClient

__all__ = ["Client"]


def _wire_time(value: TimeBound) -> str | None:
    at = parse_time_bound(value)
    return None if at is None else at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stored(item: Mapping[str, Any]) -> UsageEvent:
    """One event of a `GET /api/v1/events` page. A row today's checks refuse (stored before the check
    existed, e.g. a NUL in a model name) comes back as stored — as embedded mode's `events()` returns
    it — rather than failing the whole page. Raises `ServerError` for an item that is not an event."""
    try:
        return UsageEvent.from_dict(item)
    except InvalidEventError:
        pass
    try:
        values = {f.name: item[f.name] for f in fields(UsageEvent) if f.name in item}
        values["timestamp"] = datetime.fromisoformat(str(item["timestamp"]).replace("Z", "+00:00"))
        for name in ("cost_usd", "computed_cost_usd"):
            if values.get(name) is not None:
                values[name] = Decimal(values[name])
        values["units"] = {str(k): Decimal(v) for k, v in (item.get("units") or {}).items()}
        values["tags"] = dict(item.get("tags") or {})
        return UsageEvent(**values)
    except (KeyError, TypeError, ValueError, AttributeError, InvalidOperation) as exc:
        raise ServerError(f"the server sent an event this client cannot read: {exc!r}"[:300]) from exc


class Client:
    """A synchronous client of one llmledger server (`llmledger serve`). Thread-safe.

    `base_url`: e.g. `http://127.0.0.1:8787`; `api_key`: a key with the `ingest` scope to track and
    `read` to query (an `admin` key does both). `timeout` (seconds per attempt), `max_retries` and
    `backoff` tune retries of connection errors, 429, 502, 503, 504 (safe: the server stores each
    event once). Errors: `AuthenticationError`, `RateLimitError`, `ValidationError`,
    `ServerUnavailable`, all `ServerError` subclasses of `LlmLedgerError`; `ConfigError` for bad
    arguments here.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.2,
    ) -> None:
        self._http = HttpClient(base_url, api_key, timeout=timeout, max_retries=max_retries, backoff=backoff)

    def track(self, *, provider: str, model: str, **fields: Any) -> UsageEvent:
        """Record one call's usage on the server; returns the event as stored, priced by the server.

        Takes the fields of `llmledger.track()` (token counts, `units`, `cost_usd`, `service_tier`,
        `tenant`, `user`, ..., `tags`, `timestamp`); attribution set with `llmledger.attribute()`
        applies beneath the fields given here. Raises `InvalidUsageError` before sending for bad
        fields, `ValidationError` when the server refuses the event.
        """
        event = self._event(provider, model, fields)
        return self.track_events([event])[0]

    def track_events(self, events: Sequence[UsageEvent]) -> list[UsageEvent]:
        """Record events built elsewhere (e.g. `UsageEvent.from_dict`) in one request; returns them
        as stored, in order. Raises `InvalidUsageError` for an item that is not a `UsageEvent`,
        `ValidationError` naming the first refused event."""
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Sequence):
            raise InvalidUsageError(f"events must be a list of UsageEvent, got {type(events).__name__}")
        for index, event in enumerate(events):
            if not isinstance(event, UsageEvent):
                raise InvalidUsageError(
                    f"events[{index}] is a {type(event).__name__}, not a UsageEvent: build it with"
                    " UsageEvent.from_dict(...) (or send the wire form with POST /api/v1/events)"
                )
        if not events:
            return []
        answer = self._http.request(
            "POST",
            "/api/v1/events",
            params={"return_events": "true"},
            json_body={"events": [e.to_dict() for e in events]},
        ).body
        rejected = answer.get("rejected") or []
        if rejected:
            first = rejected[0]
            raise ValidationError(
                f"the server refused event {first.get('index')}: {first.get('error')}", status=200
            )
        stored = answer.get("events")
        if not isinstance(stored, list) or len(stored) != len(events):
            raise ServerError("the server did not return the stored events (is it older than this client?)")
        try:
            return [UsageEvent.from_dict(item) for item in stored]
        except InvalidEventError as exc:
            raise ServerError(f"the server returned an event this client cannot read: {exc}") from exc

    def usage(
        self,
        group_by: str | Sequence[str] = ("tenant", "model"),
        *,
        since: TimeBound = None,
        until: TimeBound = None,
        tags: Mapping[str, str] | None = None,
        **filters: str | Sequence[str] | None,
    ) -> list[dict[str, Any]]:
        """Rows of the usage report: group keys, requests, token sums and `cost_usd` as a Decimal."""
        keys = group_by if isinstance(group_by, str) else ",".join(group_by)
        params = self._params(since, until, tags, filters)
        params["group_by"] = keys
        rows = self._http.request("GET", "/api/v1/usage", params=params).body["rows"]
        for row in rows:
            row["cost_usd"] = Decimal(row["cost_usd"])
        return list(rows)

    def events(
        self,
        *,
        since: TimeBound = None,
        until: TimeBound = None,
        limit: int = 100,
        tags: Mapping[str, str] | None = None,
        **filters: str | Sequence[str] | None,
    ) -> list[UsageEvent]:
        """Events newest first, up to `limit` (pages through the server's keyset cursor)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidUsageError(f"limit must be a positive int, got {limit!r}")
        params = self._params(since, until, tags, filters)
        out: list[UsageEvent] = []
        cursor = None
        while len(out) < limit:
            page = min(1000, limit - len(out))
            answer = self._http.request(
                "GET", "/api/v1/events", params={**params, "limit": page, "cursor": cursor}
            ).body
            out += [_stored(item) for item in answer["events"]]
            cursor = answer.get("next_cursor")
            if cursor is None:
                break
        return out

    def spend(
        self,
        *,
        since: TimeBound = None,
        until: TimeBound = None,
        tags: Mapping[str, str] | None = None,
        **filters: str | Sequence[str] | None,
    ) -> Decimal:
        """The exact USD spent by the matching events."""
        answer = self._http.request("GET", "/api/v1/spend", params=self._params(since, until, tags, filters))
        return Decimal(answer.body["cost_usd"])

    def close(self) -> None:
        """Close this thread's connection to the server."""
        self._http.close()

    @staticmethod
    def _params(
        since: TimeBound, until: TimeBound, tags: Mapping[str, str] | None, filters: Mapping[str, Any]
    ) -> dict[str, Any]:
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        params["since"] = _wire_time(since)
        params["until"] = _wire_time(until)
        if tags:
            params["tag"] = [f"{k}:{v}" for k, v in tags.items()]
        return params

    @staticmethod
    def _event(provider: str, model: str, fields: dict[str, Any]) -> UsageEvent:
        who = current_attribution()
        data: dict[str, Any] = {
            "event_id": uuid7(),
            "schema_version": SCHEMA_VERSION,
            "provider": provider,
            "model": model,
            **{k: getattr(who, k) for k in ATTRIBUTION_FIELDS if getattr(who, k, None) is not None},
        }
        tags = {**who.tags, **(fields.pop("tags", None) or {})}
        if tags:
            data["tags"] = tags
        when = fields.pop("timestamp", None)
        if when is None:
            when = datetime.now(timezone.utc)
        if not isinstance(when, datetime):
            raise InvalidUsageError(f"timestamp must be a datetime, got {type(when).__name__}")
        data["timestamp"] = _wire_time(when)
        data.update({k: v for k, v in fields.items() if v is not None})
        if data.get("cost_usd") is not None:
            data["cost_usd"] = str(data["cost_usd"])
            data.setdefault("cost_source", "manual")
        if isinstance(data.get("units"), Mapping):
            data["units"] = {k: str(v) for k, v in data["units"].items()}
        try:
            return UsageEvent.from_dict(data)
        except InvalidEventError as exc:
            raise InvalidUsageError(str(exc)) from exc
