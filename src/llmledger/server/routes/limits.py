"""`/api/v1/limits`: define, list, read and delete spend limits, top up prepaid credit, and read where
each limit stands per subject (`/status`). Admin scope to change, read scope to read. Money and
amounts are decimal strings. A key bound to a tenant sees (and, as admin, defines) only limits
scoped to its tenant."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from llmledger.engine import limit_admin
from llmledger.engine.limit_admin import LimitStatus
from llmledger.errors import LimitDefinitionError
from llmledger.limit.model import SCOPE_KEYS, Limit
from llmledger.server.deps import AUTH_ERRORS, AdminKey, ReadKey, State
from llmledger.storage.keys import ApiKey

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/limits", tags=["limits"], responses=AUTH_ERRORS)


class _LimitId(Convertor[str]):
    """A limit id in a path (`lim_` and hex): so `/limits/status` is never read as a limit id."""

    regex = "lim_[0-9a-f]{1,60}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("limit_id", _LimitId())

Label = Annotated[str | None, Field(min_length=1, max_length=256)]
LimitId = Annotated[str, Path(pattern="^lim_[0-9a-f]{1,60}$", description="a limit's id")]
# Strict number types: JSON `true` is not the amount 1 (pydantic would coerce it; schemathesis found it).
Amount = Annotated[StrictStr | StrictInt | None, Field(description="a decimal string (or an integer)")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such limit"}}
_BAD: dict[int | str, dict[str, Any]] = {
    400: {"description": "unreadable body"},
    422: {"description": "an invalid definition: the message lists every problem"},
}


class LimitScope(BaseModel):
    """What the limit applies to: a value, or `*` for each distinct value (`user: "*"`)."""

    model_config = ConfigDict(extra="forbid")

    tenant: Label = None
    user: Label = None
    org: Label = None
    feature: Label = None
    agent: Label = None
    model: Label = None
    provider: Label = None
    tags: dict[str, str] | None = None


class LimitDefinition(BaseModel):
    """The keywords of `llmledger.set_limit` (docs/limits.md); exactly one of usd, tokens, requests.
    The same scope, metric and window replace the earlier limit (the id is derived from them)."""

    model_config = ConfigDict(extra="forbid")

    usd: Amount = None
    tokens: Amount = None
    requests: Amount = None
    per: str = Field("month", max_length=64, description="day, week, month, lifetime, rolling:1h ...")
    tz: str = Field("UTC", max_length=64)
    week_start: StrictStr | StrictInt = "monday"
    month_anchor: StrictInt = 1
    mode: str = Field("hard", max_length=16, description="hard, soft or throttle")
    enforcement: str | None = Field(None, max_length=16, description="strict or estimate")
    thresholds: list[StrictStr | StrictFloat] = Field(["0.5", "0.8", "1.0"], max_length=32)
    name: Label = None
    max_wait: StrictFloat = 0.0
    downgrade: dict[str, str] | None = None
    unpriced: str = Field("refuse", max_length=16)
    fallback_price: list[StrictStr | StrictInt] | None = Field(
        None, description="[input, output] USD per 1M tokens"
    )
    scope: LimitScope = LimitScope()


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictStr | StrictInt = Field(description="credit to add, a positive decimal string")
    scope: LimitScope = Field(
        default_factory=LimitScope, description='names the subject of a `*` limit: {"user": "u1"}'
    )


class TopUpAnswer(BaseModel):
    limit_id: str
    granted: str = Field(description="credit granted so far on top of the limit's amount")


class LimitList(BaseModel):
    limits: list[dict[str, Any]]


class Status(BaseModel):
    limit_id: str
    name: str | None
    scope: dict[str, str]
    subject: str = Field(description='the counter, e.g. "user=u1" for a user="*" limit; "" for one counter')
    metric: str
    window: str
    spent: str
    reserved: str
    allowed: str = Field(description="the limit's amount plus any credit")
    remaining: str
    resets_at: str | None


class StatusList(BaseModel):
    statuses: list[Status]


def _visible(limit: Limit, key: ApiKey) -> bool:
    return key.tenant is None or dict(limit.scope).get("tenant") in (key.tenant, "*")


def _scope_of(scope: LimitScope, key: ApiKey) -> dict[str, Any]:
    fields = scope.model_dump(exclude_none=True)
    if key.tenant is not None:
        if fields.get("tenant", key.tenant) != key.tenant:
            raise HTTPException(403, f"this key is bound to tenant {key.tenant!r}")
        fields["tenant"] = key.tenant
    return fields


@router.get("", response_model=LimitList)
async def list_limits(state: State, key: ReadKey) -> LimitList:
    """Every limit defined (those of its tenant for a tenant-bound key)."""
    found = await run_in_threadpool(state.engine.limits)
    return LimitList(limits=[limit.to_dict() for limit in found if _visible(limit, key)])


@router.post("", status_code=201, responses=_BAD)
async def set_limit(body: LimitDefinition, state: State, key: AdminKey) -> dict[str, Any]:
    """Create or replace a limit; answers it as stored (`Limit.to_dict()`)."""
    fields = body.model_dump(exclude={"scope"})
    fields["thresholds"] = [str(t) for t in body.thresholds]
    scope = _scope_of(body.scope, key)
    try:
        limit = await run_in_threadpool(lambda: state.engine.set_limit(**fields, **scope))
    except LimitDefinitionError as exc:
        raise HTTPException(422, str(exc)) from None
    return limit.to_dict()


@router.get("/status", response_model=StatusList)
async def status(
    request: Request,
    state: State,
    key: ReadKey,
    limit_id: Annotated[str | None, Query(max_length=64)] = None,
    tag: Annotated[list[str] | None, Query(description="tag values, `name:value`, repeatable")] = None,
) -> StatusList:
    """Where each limit stands per subject: filter by scope values (`tenant=`, `user=`..., `tag=`);
    a `*` dimension left out lists every subject the ledger has for it now (each user of a
    `user="*"` limit), at most 1,000 per limit."""
    query: dict[str, str] = {}
    for name in SCOPE_KEYS:
        value = request.query_params.get(name)
        if value:
            query[name] = value
    for pair in tag or ():
        name, sep, value = pair.partition(":")
        if not sep or not name:
            raise HTTPException(422, f"tag {pair!r:.80} must be name:value")
        query[f"tag:{name}"] = value
    if key.tenant is not None:
        if query.get("tenant", key.tenant) != key.tenant:
            raise HTTPException(403, "this key may only read its own tenant")
        query["tenant"] = key.tenant
    found = await run_in_threadpool(
        limit_admin.statuses,
        state.engine.enforcer,
        query,
        limit_id=limit_id,
        need_dimension=None if key.tenant is None else "tenant",
    )
    return StatusList(statuses=[_status(s) for s in found])


def _status(s: LimitStatus) -> Status:
    limit = s.limit
    return Status(
        limit_id=limit.id,
        name=limit.name,
        scope=dict(limit.scope),
        subject=s.subject,
        metric=limit.metric,
        window=limit.window.describe(),
        spent=_dec(s.spent),
        reserved=_dec(s.reserved),
        allowed=_dec(s.allowed),
        remaining=_dec(s.remaining),
        resets_at=None if s.resets_at is None else s.resets_at.isoformat(),
    )


def _dec(value: Decimal) -> str:
    return f"{value:f}"


async def _find(state: State, key: ApiKey, limit_id: str) -> Limit:
    for limit in await run_in_threadpool(state.engine.limits):
        if limit.id == limit_id and _visible(limit, key):
            return limit
    raise HTTPException(404, f"no limit {limit_id!r}")


@router.get("/{limit_id:limit_id}", responses=_NOT_FOUND)
async def get_limit(limit_id: LimitId, state: State, key: ReadKey) -> dict[str, Any]:
    """One limit's definition."""
    return (await _find(state, key, limit_id)).to_dict()


@router.delete("/{limit_id:limit_id}", status_code=204, response_class=Response, responses=_NOT_FOUND)
async def delete_limit(limit_id: LimitId, state: State, key: AdminKey) -> Response:
    """Remove a limit and its counters, reservations and credit."""
    await _find(state, key, limit_id)
    if not await run_in_threadpool(state.engine.delete_limit, limit_id):
        raise HTTPException(404, f"no limit {limit_id!r}")
    return Response(status_code=204)


@router.post("/{limit_id:limit_id}/top-up", response_model=TopUpAnswer, responses={**_NOT_FOUND, **_BAD})
async def top_up(limit_id: LimitId, body: TopUp, state: State, key: AdminKey) -> TopUpAnswer:
    """Add credit to a lifetime (prepaid) limit; `scope` names the subject of a `*` limit."""
    await _find(state, key, limit_id)
    scope = _scope_of(body.scope, key)
    try:
        granted = await run_in_threadpool(lambda: state.engine.top_up(limit_id, str(body.amount), **scope))
    except LimitDefinitionError as exc:
        raise HTTPException(422, str(exc)) from None
    return TopUpAnswer(limit_id=limit_id, granted=_dec(granted))
