"""The limits engine on its own: `Engine.reserve/settle/release`, limits CRUD, top-up, status and
reconcile on a real SQLite ledger with no SDK runtime; `Shape` and its wire form; import direction."""

from __future__ import annotations

import ast
import sqlite3
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmledger
from llmledger.engine import EnforcementPolicy, Engine
from llmledger.errors import (
    ConfigError,
    InvalidShapeError,
    InvalidUsageError,
    LimitDefinitionError,
    LimitExceeded,
    LimitUndecided,
    UnpricedRefused,
)
from llmledger.events import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.limit.request import shape_of
from llmledger.limit.shape import TOOL_FEES, Shape
from llmledger.sdk import runtime as _rt

SRC = Path(llmledger.__file__).parent
BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hello world, please " * 20}],
    "max_tokens": 1000,
    "n": 2,
    "service_tier": "priority",
}


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    eng = Engine(str(tmp_path / "engine.db"))
    yield eng
    eng.close()


def _event(tenant: str, cost: str, **extra: Any) -> dict[str, Any]:
    """A wire-form event of now (so it counts in today's window)."""
    return {
        "event_id": uuid7(),
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 5,
        "output_tokens": 100,
        "cost_usd": cost,
        "tenant": tenant,
        **extra,
    }


def test_engine_reserves_settles_and_releases_without_any_sdk_runtime(engine: Any) -> None:
    limit = engine.set_limit(usd="0.05", per="day", tenant="acme")
    assert engine.limits() == [limit]
    who = {"tenant": "acme", "user": "u1"}
    first = engine.reserve(who, provider="openai", model="gpt-4o", body=BODY)
    assert first.id is not None and first.model is None and first.expires_at is not None
    held = engine.status(tenant="acme")[0]
    assert held.reserved > Decimal("0.03")  # 2 choices x 1000 tokens at the priority rate
    with pytest.raises(LimitExceeded) as info:
        engine.reserve(who, provider="openai", model="gpt-4o", body=BODY)
    assert info.value.limit_id == limit.id
    engine.settle(first.id, {limit.id: Decimal("0.01")})
    assert engine.status(tenant="acme")[0].reserved == Decimal("0.01")
    second = engine.reserve(who, provider="openai", model="gpt-4o", input_tokens=10, max_output_tokens=100)
    engine.release(first.id)
    engine.release(second.id)
    assert engine.status(tenant="acme")[0].reserved == 0
    assert engine.reserve({"tenant": "other"}, provider="openai", model="gpt-4o", body=BODY).id is None
    assert _rt._runtime is None  # nothing here built (or needed) the SDK's process runtime
    assert engine.reconcile() == []


def test_settle_by_event_finds_the_limits_when_another_process_reserved(tmp_path: Path) -> None:
    url = str(tmp_path / "shared.db")
    one, two = Engine(url), Engine(url)
    try:
        limit = one.set_limit(usd=1, per="day", tenant="acme")
        rid = one.reserve({"tenant": "acme"}, provider="openai", model="gpt-4o", body=BODY).id
        assert rid is not None
        event = UsageEvent.from_dict(_event("acme", "0.003"))
        two.settle(rid, event)  # `two` never saw this reservation: matched by the event's scope
        assert one.status(tenant="acme")[0].reserved == Decimal("0.003")
        assert one.status(tenant="acme")[0].limit == limit
    finally:
        one.close()
        two.close()


def test_a_shape_sent_over_the_wire_reserves_what_the_body_does(engine: Any) -> None:
    engine.set_limit(usd=100, per="day", tenant="acme")
    engine.set_limit(tokens=10**7, per="day", tenant="acme")
    by_body = engine.reserve({"tenant": "acme"}, provider="openai", model="gpt-4o", body=BODY)
    amounts_body = sorted(s.reserved for s in engine.status(tenant="acme"))
    engine.release(by_body.id)
    wire = shape_of(BODY, "gpt-4o", "openai").to_wire()
    shape = Shape.from_wire(wire)
    by_shape = engine.reserve({"tenant": "acme"}, provider="openai", model="gpt-4o", shape=shape)
    assert by_shape.id is not None
    assert sorted(s.reserved for s in engine.status(tenant="acme")) == amounts_body


def test_estimate_limits_use_the_learned_average_of_ingested_events(engine: Any) -> None:
    engine.set_limit(usd=1, per="day", tenant="acme", enforcement="estimate")
    engine.ingest([_event("acme", "0.002") for _ in range(3)])
    rid = engine.reserve({"tenant": "acme"}, provider="openai", model="gpt-4o", body=BODY).id
    assert rid is not None
    assert engine.status(tenant="acme")[0].reserved == Decimal("0.002")  # not the strict worst case


def test_limits_crud_top_up_and_status_per_user(engine: Any) -> None:
    credit = engine.set_limit(usd=1, per="lifetime", user="*")
    assert engine.top_up(credit.id, "2.5", user="u1") == Decimal("2.5")
    engine.ingest([_event("t", "0.5", user="u1"), _event("t", "0.25", user="u2")])
    u1 = engine.status(user="u1")[0]
    assert (u1.subject, u1.spent, u1.allowed, u1.remaining) == (
        "user=u1",
        Decimal("0.5"),
        Decimal("3.5"),
        Decimal("3.0"),
    )
    assert engine.status(user="u2")[0].remaining == Decimal("0.75")
    with pytest.raises(LimitDefinitionError, match="name one"):
        engine.top_up(credit.id, 1)
    with pytest.raises(LimitDefinitionError, match="unknown scope"):
        engine.status(planet="mars")
    assert engine.delete_limit(credit.id) is True
    assert engine.delete_limit(credit.id) is False
    assert engine.limits() == []


def test_unpriced_model_refused_and_bad_attribution_typed(engine: Any) -> None:
    engine.set_limit(usd=1, per="day", tenant="acme")
    with pytest.raises(UnpricedRefused):
        engine.reserve({"tenant": "acme"}, provider="openai", model="no-such-model-xyz", input_tokens=5)
    with pytest.raises(InvalidUsageError):
        engine.reserve({"tenant": 5}, provider="openai", model="gpt-4o", input_tokens=5)


def test_closed_policy_refuses_a_call_the_ledger_cannot_decide(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    eng = Engine(str(path), policy=EnforcementPolicy(limit_timeout=0.05, on_ledger_fault="closed"))
    opened = Engine(str(path), policy=EnforcementPolicy(limit_timeout=0.05))  # "open": the default
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        eng.set_limit(usd=1, per="day", tenant="acme")
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(LimitUndecided):
            eng.reserve({"tenant": "acme"}, provider="openai", model="gpt-4o", input_tokens=5)
        assert (eng.enforcer.unchecked, eng.enforcer.refused) == (1, 1)
        sent = opened.reserve({"tenant": "acme"}, provider="openai", model="gpt-4o", input_tokens=5)
        assert sent.id is None and opened.enforcer.unchecked == 1
    finally:
        holder.close()
        eng.close()
        opened.close()


def test_policy_refuses_bad_settings() -> None:
    for bad in (
        {"limit_timeout": 0},
        {"on_ledger_fault": "maybe"},
        {"default_output_cap": True},
        {"reservation_ttl": float("nan")},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            EnforcementPolicy(**bad)  # type: ignore[arg-type]


shapes = st.builds(
    Shape,
    input_tokens=st.integers(0, 10**8),
    output_tokens=st.integers(1, 10**8),
    choices=st.integers(1, 1000),
    tier=st.sampled_from([None, "priority", "flex", "auto", "scale"]),
    tool_calls=st.integers(0, 1000),
    tool_kinds=st.lists(st.sampled_from(sorted(TOOL_FEES)), unique=True).map(lambda k: tuple(sorted(k))),
    cache_write=st.booleans(),
    audio=st.booleans(),
    input_estimate=st.none() | st.integers(0, 10**8),
)


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_shape_wire_round_trip(shape: Shape) -> None:
    import json

    assert Shape.from_wire(json.loads(json.dumps(shape.to_wire()))) == shape


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ([1, 2], "JSON object"),
        ({"output_tokens": 5}, "input_tokens"),
        ({"input_tokens": -1, "output_tokens": 5}, "input_tokens"),
        ({"input_tokens": True, "output_tokens": 5}, "input_tokens"),
        ({"input_tokens": 1, "output_tokens": 0}, "output_tokens"),
        ({"input_tokens": 1}, "output_tokens"),
        ({"input_tokens": 1, "output_tokens": 5, "choices": 1.5}, "choices"),
        ({"input_tokens": 1, "output_tokens": 5, "tier": "DROP TABLE"}, "tier"),
        ({"input_tokens": 1, "output_tokens": 5, "tool_kinds": ["rm"]}, "tool_kinds"),
        ({"input_tokens": 1, "output_tokens": 5, "tool_kinds": "web_search"}, "tool_kinds"),
        ({"input_tokens": 1, "output_tokens": 5, "audio": "yes"}, "audio"),
        ({"input_tokens": 1, "output_tokens": 5, "prompt": "secret"}, "unknown"),
    ],
)
def test_bad_wire_shapes_are_typed_errors_naming_the_field(wire: Any, field: str) -> None:
    with pytest.raises(InvalidShapeError, match=field):
        Shape.from_wire(wire)


def test_a_wire_shape_without_a_cap_takes_the_default() -> None:
    assert Shape.from_wire({"input_tokens": 3}, default_output_tokens=77).output_tokens == 77


def test_shape_of_reads_every_multiplier_of_a_body() -> None:
    shape = shape_of(BODY, "gpt-4o", "openai")
    assert (shape.output_tokens, shape.choices, shape.tier) == (1000, 2, "priority")
    assert shape.input_tokens > 0 and shape.input_estimate is not None and shape.input_estimate > 0
    assert shape_of(None, "gpt-4o", default_output_cap=99).output_tokens == 99


_LOWER = ("events", "pricing", "limit", "tokens", "storage", "engine", "identity.py", "errors.py")
_UPPER = ("sdk", "instrumentation", "server", "cli", "remote", "integrations", "transport", "gateway")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_imports_flow_one_way_engine_and_below_never_import_a_door() -> None:
    bad = []
    for part in _LOWER:
        base = SRC / part
        for path in [base] if base.is_file() else sorted(base.rglob("*.py")):
            for name in _imports(path):
                if any(name == f"llmledger.{up}" or name.startswith(f"llmledger.{up}.") for up in _UPPER):
                    bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert bad == []
