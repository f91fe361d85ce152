"""`llmledger demo`: meter realistic calls of the real SDK clients for a few tenants, then report.

Everything runs in-process: the clients talk to `FakeProvider` through an `httpx2.MockTransport`.
`llmledger.init()` instruments the SDKs, so every call is metered with no code at the call site;
tenant and user come from an `llmledger.attribute()` block, the feature from a `ledger_feature=`
keyword on the call itself.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.text import Text

import llmledger
from llmledger.cli.fake_provider import FakeProvider
from llmledger.cli.render import render_usage

__all__ = ["run_demo"]

DEMO_MARK = "demo_ledger"
"""Key of the `llmledger_meta` row that marks a ledger the demo created (and may reset)."""
TRIAL_CALLS = 10
TENANTS = [("acme", "pro"), ("globex", "free"), ("initech", "free"), ("umbrella", "pro")]
FEATURES = ["chat", "summarize", "support-agent"]


def _openai_call(client: Any, model: str, prompt: str, feature: str, **options: Any) -> None:
    # no metering code here: init() instrumented the SDK; ledger_feature= is a per-call label
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], ledger_feature=feature, **options
    )


def _anthropic_call(client: Any, model: str, prompt: str, feature: str) -> None:
    client.messages.create(
        model=model,
        max_tokens=512,
        messages=[{"role": "user", "content": prompt}],
        ledger_feature=feature,
    )


def _limits_tour(client: Any) -> tuple[int, int]:
    """A free-plan user hits a per-user daily limit: the calls past it never leave the process."""
    from llmledger.sdk.limits import set_limit

    set_limit(usd="0.001", per="day", user="*", tags={"plan": "free"})
    admitted = refused = 0
    with llmledger.attribute(tenant="globex", user="globex-trial", tags={"plan": "free"}):
        for i in range(TRIAL_CALLS):
            try:
                _openai_call(client, "gpt-4o-mini", f"trial question {i}", "chat", max_tokens=300)
                admitted += 1
            except llmledger.LimitExceeded:
                refused += 1
            llmledger.flush()  # each decision sees the previous call settled: the same result every run
    return admitted, refused


def _prepare(console: Console, path: str) -> None:
    """Open the demo's ledger: a new one, or one an earlier demo made (reset); refuse any other."""
    import sqlalchemy as sa

    from llmledger.cli.app import fail
    from llmledger.sdk import limits as L
    from llmledger.sdk.runtime import current
    from llmledger.storage.tables import events, meta

    llmledger.init(ledger=path)
    engine = current().ledger.engine
    with engine.connect() as conn:
        marked = conn.execute(sa.select(meta.c.value).where(meta.c.key == DEMO_MARK)).scalar() is not None
        held = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
    if not marked and (held or L.limits()):
        llmledger.shutdown()
        fail(
            f"{path} holds {held} event(s) and {len(L.limits())} limit(s) the demo did not make; "
            "the demo never writes into a real ledger: leave out --ledger (a temporary one is used) "
            "or name a new file"
        )
    if marked:  # an earlier demo's ledger: start again from nothing, so every run shows the same
        console.print(Text("(resetting the ledger of an earlier demo run)"))
        llmledger.delete_events(before=datetime.now(timezone.utc) + timedelta(days=1))
        for limit in L.limits():
            L.delete_limit(limit.id)
    else:
        with engine.begin() as conn:
            conn.execute(sa.insert(meta).values(key=DEMO_MARK, value=1))


def run_demo(
    console: Console,
    ledger: str | None,
    calls: int,
    *,
    keep: bool = False,
    then: Callable[[str], None] | None = None,
) -> None:
    """Run the tour and print the reports; a temporary ledger is removed afterwards unless `keep`.
    `then(path)` runs on the demo's ledger after the tour, before it is removed (`--serve`)."""
    folder = None if ledger else tempfile.mkdtemp(prefix="llmledger-demo-")
    path = ledger or str(Path(folder or ".") / "demo.db")
    try:
        _prepare(console, path)
        _tour(console, path, calls)
        llmledger.shutdown()
        if then is not None:
            then(path)
    finally:
        llmledger.shutdown()
        if folder is not None and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if ledger or keep:
        console.print(
            Text.assemble(
                "\nTry: ",
                (f"llmledger report --ledger {path} --by day,tenant", "bold"),
                "  or  ",
                (f"llmledger events --ledger {path} --tenant acme", "bold"),
            )
        )


def _tour(console: Console, path: str, calls: int) -> None:
    import anthropic
    import httpx2
    import openai

    fake = FakeProvider()
    oai = openai.OpenAI(api_key="sk-demo", http_client=httpx2.Client(transport=fake.transport()))
    claude = anthropic.Anthropic(api_key="sk-ant-demo", http_client=httpx2.Client(transport=fake.transport()))
    rng = random.Random(7)
    plan = [
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet-4-6"),
        ("anthropic", "claude-haiku-4-5"),
    ]
    console.print(
        Text.assemble(
            ("llmledger demo", "bold"),
            f": {calls} calls from four tenants, 1 call to a fine-tuned model, then {TRIAL_CALLS} calls "
            "of a free-plan trial user under a $0.001/day limit; the real openai and anthropic clients "
            f"against an in-process fake provider (no network, no keys).\nLedger: {path}\n",
        )
    )
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("calling LLMs", total=calls + 1)
        for i in range(calls):
            tenant, tier = rng.choice(TENANTS)
            feature = rng.choice(FEATURES)
            provider, model = rng.choice(plan[:2] if tier == "free" else plan)
            prompt = f"request {i} from {tenant}/{feature}: " + "lorem ipsum " * rng.randint(10, 400)
            with llmledger.attribute(tenant=tenant, user=f"{tenant}-user-{i % 3}", tags={"plan": tier}):
                if provider == "openai":
                    _openai_call(oai, model, prompt, feature)
                else:
                    _anthropic_call(claude, model, prompt, feature)
            progress.advance(task)
        # A fine-tuned model the catalogue cannot know: flagged as unpriced, never $0.
        with llmledger.attribute(tenant="acme", tags={"plan": "pro"}):
            _openai_call(oai, "ft:gpt-4o-mini:acme::demo", "classify this ticket", "chat")
        progress.advance(task)
    admitted, refused = _limits_tour(oai)
    llmledger.flush()

    for keys, title in (
        (["tenant", "feature"], "Spend by tenant and feature"),
        (["provider", "model"], "Spend by model"),
        (["tag:plan"], "Spend by plan (tag)"),
    ):
        render_usage(llmledger.usage(keys), keys, "table", console, title)
    stats = llmledger.stats()
    from llmledger.sdk.limits import reconcile

    agree = "equal" if not reconcile() else "DO NOT equal"
    console.print(
        Text(
            f"{calls + 1 + admitted} requests recorded = {calls} + 1 fine-tuned + {admitted} trial calls "
            f"admitted; {refused} trial calls refused by the limit before reaching the provider.\n"
            f"Events written: {stats.events_recorded}; unpriced: {stats.events_unpriced} "
            f"({', '.join(stats.unpriced_models) or 'none'}); dropped: {stats.events_dropped}. "
            f"Reconcile: the limit counters {agree} the ledger's events."
        )
    )
