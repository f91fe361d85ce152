"""`llmledger demo`: meter realistic calls of the real SDK clients for a few tenants, then report.

Everything runs in-process: the clients talk to `FakeProvider` through an `httpx2.MockTransport`.
`llmledger.init()` instruments the SDKs, so every call is metered with no code at the call site;
tenant and user come from an `llmledger.attribute()` block, the feature from a `ledger_feature=`
keyword on the call itself.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

import llmledger
from llmledger.cli.fake_provider import FakeProvider
from llmledger.cli.render import render_usage

__all__ = ["run_demo"]

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
        for i in range(10):
            try:
                _openai_call(client, "gpt-4o-mini", f"trial question {i}", "chat", max_tokens=300)
                admitted += 1
            except llmledger.LimitExceeded:
                refused += 1
    return admitted, refused


def run_demo(console: Console, ledger: str | None, calls: int) -> None:
    """Run the tour and print the reports."""
    import anthropic
    import httpx2
    import openai

    path = ledger or str(Path(tempfile.mkdtemp(prefix="llmledger-demo-")) / "demo.db")
    llmledger.init(ledger=path)
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
        f"[bold]llmledger demo[/bold]: {calls} calls through the real openai and anthropic clients "
        f"against an in-process fake provider (no network, no keys).\nLedger: {path}\n"
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

    render_usage(
        llmledger.usage(["tenant", "feature"]),
        ["tenant", "feature"],
        "table",
        console,
        "Spend by tenant and feature",
    )
    render_usage(
        llmledger.usage(["provider", "model"]), ["provider", "model"], "table", console, "Spend by model"
    )
    render_usage(llmledger.usage(["tag:plan"]), ["tag:plan"], "table", console, "Spend by plan (tag)")
    stats = llmledger.stats()
    console.print(
        f"recorded {stats.events_recorded} events; unpriced: {stats.events_unpriced} "
        f"({', '.join(stats.unpriced_models) or 'none'}); dropped: {stats.events_dropped}"
    )
    from llmledger.sdk.limits import reconcile

    agree = "equal" if not reconcile() else "DO NOT equal"
    console.print(
        f"spend limit ($0.001/day for each free-plan user): {admitted} calls admitted, {refused} refused "
        f"before reaching the provider; reconcile: the limit counters {agree} the ledger's events"
    )
    console.print(
        f"\nTry: [bold]llmledger report --ledger {path} --by day,tenant[/bold]  "
        f"or  [bold]llmledger events --ledger {path} --tenant acme[/bold]"
    )
    llmledger.shutdown()
