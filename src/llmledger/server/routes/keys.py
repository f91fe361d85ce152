"""`/api/v1/keys`: create (the key is shown once), list and revoke API keys. Admin scope."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from llmledger.server.deps import AUTH_ERRORS, AdminKey, State

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], responses=AUTH_ERRORS)


class KeyCreate(BaseModel):
    scope: Literal["admin", "ingest", "read"]
    tenant: str | None = Field(None, min_length=1, max_length=256, description="bind the key to one tenant")
    name: str | None = Field(None, min_length=1, max_length=256)


class KeyPublic(BaseModel):
    key_id: str
    scope: str
    tenant: str | None
    name: str | None
    created_at: str
    revoked_at: str | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the whole key: shown this once, never stored")


@router.post(
    "", response_model=KeyCreated, status_code=201, responses={400: {"description": "unreadable body"}}
)
async def create_key(body: KeyCreate, state: State, _: AdminKey) -> KeyCreated:
    """Create a key; the answer holds the secret key once."""
    new = await run_in_threadpool(state.engine.keys.create, body.scope, tenant=body.tenant, name=body.name)
    return KeyCreated(**new.key.to_dict(), key=new.secret)  # type: ignore[arg-type]


@router.get("", response_model=list[KeyPublic])
async def list_keys(state: State, _: AdminKey) -> list[KeyPublic]:
    """Every key without its secret, newest first."""
    keys = await run_in_threadpool(state.engine.keys.list)
    return [KeyPublic(**k.to_dict()) for k in keys]  # type: ignore[arg-type]


@router.delete("/{key_id}", status_code=204, responses={404: {"description": "no such active key"}})
async def revoke_key(key_id: str, state: State, _: AdminKey) -> None:
    """Revoke a key at once (on this server; other replicas within a few seconds)."""
    if not await run_in_threadpool(state.engine.keys.revoke, key_id):
        raise HTTPException(404, f"no active key {key_id!r}")
    state.forget_key(key_id)
