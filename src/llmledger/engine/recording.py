"""Recording usage events that arrive in their wire form: validate each, price those without a cost,
write the valid ones idempotently, and say exactly which items were refused and why.

One bad item never costs the others: validation is per item, and a write the database refuses is
split until the rows at fault are found (they are rejected; everything else is stored).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from llmledger.engine.decisions import owned_reservation_id
from llmledger.errors import InvalidEventError
from llmledger.events.event import UsageEvent
from llmledger.events.schema import TOKEN_FIELDS
from llmledger.limit.model import Alert
from llmledger.pricing.call import price_call
from llmledger.pricing.pricer import Pricer
from llmledger.storage.ledger import Ledger

__all__ = ["IngestResult", "Rejected", "ingest", "price_event", "read_event"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """One refused item: its position in the batch and what is wrong with it."""

    index: int
    error: str


@dataclass(slots=True)
class IngestResult:
    """The outcome of one batch: how many items are stored (retries of stored ones included) and
    which were refused."""

    accepted: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    priced: int = 0
    """Items that arrived without a cost and were priced here."""
    stored: list[UsageEvent] = field(default_factory=list)
    """The events this batch newly stored (not those a retry had stored before)."""
    events: list[UsageEvent] | None = None
    """With `return_events`: each accepted item's event as stored, in input order."""
    alerts: list[Alert] = field(default_factory=list)
    """Threshold alerts the committed spend crossed (each recorded once across processes)."""

    @property
    def duplicates(self) -> int:
        """Accepted items that were already stored (a retried batch)."""
        return self.accepted - len(self.stored)


def price_event(pricer: Pricer, event: UsageEvent) -> bool:
    """Price `event` in place when it arrived with neither a cost nor a reason it has none; True
    when it did. Only for an event just parsed and not yet shared (`UsageEvent` is frozen to its
    users; filling in the price of a fresh one costs a fraction of `dataclasses.replace`)."""
    if event.cost_usd is not None or event.unpriced_reason is not None:
        return False
    tokens = dict(zip(TOKEN_FIELDS, _tokens_of(event), strict=True))
    notes = [event.cost_note] if event.cost_note else []
    cost, source, reason, partial, _ = price_call(
        pricer,
        event.provider,
        event.model,
        tokens,
        event.units,
        event.timestamp,
        event.service_tier,
        None,
        notes,
    )
    _set(event, "cost_usd", cost)
    _set(event, "cost_source", source)
    _set(event, "unpriced_reason", reason)
    _set(event, "partially_priced", partial)
    _set(event, "cost_note", "; ".join(notes) if notes else None)
    return True


_set = object.__setattr__
_tokens_of = operator.attrgetter(*TOKEN_FIELDS)


def _bind_tenant(item: Mapping[str, Any], tenant: str | None) -> Mapping[str, Any]:
    if tenant is None:
        return item
    named = item.get("tenant")
    if named is None:
        return {**item, "tenant": tenant}
    if named != tenant:
        raise InvalidEventError(f"this key is bound to tenant {tenant!r}; the event names another tenant")
    return item


def _reservation(item: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """An item's `reservation_id` (the reservation its event settles), split from the event."""
    if "reservation_id" not in item:
        return item, None
    rid = item["reservation_id"]
    if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= 64):
        raise InvalidEventError(f"reservation_id must be a reservation's id (a string), got {rid!r:.80}")
    return {k: v for k, v in item.items() if k != "reservation_id"}, rid


def read_event(pricer: Pricer, item: Any, tenant: str | None = None) -> UsageEvent:
    """One wire-form event, validated, bound to `tenant` (see `ingest`) and priced when it came
    without a cost. Raises `InvalidEventError` saying what is wrong."""
    if not isinstance(item, Mapping):
        raise InvalidEventError(f"an event must be a JSON object, got {type(item).__name__}")
    event = UsageEvent.from_dict(_bind_tenant(item, tenant))
    price_event(pricer, event)
    return event


def ingest(
    ledger: Ledger,
    pricer: Pricer,
    items: Sequence[Any],
    *,
    tenant: str | None = None,
    return_events: bool = False,
) -> IngestResult:
    """Validate, price and store a batch of wire-form events (`UsageEvent.to_dict()` shapes).

    `tenant`: the tenant a bound key forces (events naming none get it; events naming another are
    refused). Idempotent by `event_id`: a retried batch is accepted again and stored once. An item
    may name the `reservation_id` its call held: the reservation is dropped in the transaction that
    stores the event (a refused item's reservation stays held until it expires: safe).
    `return_events`: fill `result.events` with every accepted item's event as stored (for a retried
    one, the copy stored first), in input order. Raises
    only when the database itself fails (the caller answers "retry later"); bad items are returned
    in `rejected`, never raised.
    """
    result = IngestResult()
    valid: list[tuple[int, UsageEvent]] = []
    seen: set[str] = set()
    order: dict[int, str] = {}  # item index -> event_id, for `return_events`
    releases: list[str] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, Mapping):
                raise InvalidEventError(f"an event must be a JSON object, got {type(item).__name__}")
            item, rid = _reservation(item)
            event = UsageEvent.from_dict(_bind_tenant(item, tenant))
            if rid is not None:  # a bound key names its own tenant's reservations only
                releases.append(owned_reservation_id(rid, tenant))
            order[index] = event.event_id
            if event.event_id in seen:  # the same event twice in one batch: stored once
                result.accepted += 1
                continue
            result.priced += price_event(pricer, event)
        except InvalidEventError as exc:
            result.rejected.append(Rejected(index, str(exc)))
            continue
        seen.add(event.event_id)
        valid.append((index, event))
    _write_isolating(ledger, valid, result, releases)  # stores the new ones, says which they are
    result.rejected.sort(key=lambda r: r.index)
    if return_events:
        refused = {r.index for r in result.rejected}
        ids = [order[i] for i in range(len(items)) if i not in refused and i in order]
        stored = ledger.by_ids(ids)
        result.events = [stored[i] for i in ids if i in stored]
    return result


def _write_isolating(
    ledger: Ledger, batch: list[tuple[int, UsageEvent]], result: IngestResult, releases: Sequence[str] = ()
) -> None:
    if not batch:
        if releases:
            result.alerts += ledger.write([], releases)
        return
    try:
        result.alerts += ledger.write([e for _, e in batch], releases, stored=result.stored)
    except (sa.exc.DataError, sa.exc.IntegrityError, sa.exc.StatementError) as exc:
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            raise  # the database is down, locked or full: not the rows' fault
        if len(batch) == 1:
            index, _ = batch[0]
            cause = getattr(exc, "orig", None) or exc
            reason = (str(cause).splitlines() or ["rejected by the database"])[0][:200]
            result.rejected.append(Rejected(index, f"the ledger refused this event: {reason}"))
            if releases:
                result.alerts += ledger.write([], releases)
            return
        half = len(batch) // 2
        _write_isolating(ledger, batch[:half], result)
        _write_isolating(ledger, batch[half:], result, releases)
        return
    result.accepted += len(batch)  # new or stored before (a retry): `write` listed the new ones
