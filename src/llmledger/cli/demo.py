"""`llmledger demo`: meter realistic calls of the real SDK clients for a few tenants, then report.

Everything runs in-process: the clients talk to `FakeProvider` through an `httpx2.MockTransport`.
Each call is recorded with `llmledger.track()` from the usage the SDK parsed, within an
`llmledger.attribute()` block, the way an application meters calls by hand.
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


def _openai_call(client: Any, model: str, prompt: str) -> None:
    response = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    usage = response.usage
    details = usage.prompt_tokens_details
    reasoning = usage.completion_tokens_details
    llmledger.track(
        provider="openai",
        model=response.model,
        requested_model=model,
        endpoint="chat.completions",
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cache_read_tokens=(details.cached_tokens or 0) if details else 0,
        reasoning_tokens=(reasoning.reasoning_tokens or 0) if reasoning else 0,
        request_id=response.id,
    )


def _anthropic_call(client: Any, model: str, prompt: str) -> None:
    message = client.messages.create(
        model=model, max_tokens=512, messages=[{"role": "user", "content": prompt}]
    )
    u = message.usage
    read = u.cache_read_input_tokens or 0
    write = u.cache_creation_input_tokens or 0
    one_hour = (u.cache_creation.ephemeral_1h_input_tokens or 0) if u.cache_creation else 0
    llmledger.track(
        provider="anthropic",
        model=message.model,
        requested_model=model,
        endpoint="messages",
        input_tokens=u.input_tokens + read + write,  # Anthropic's input_tokens excludes both cache pools
        output_tokens=u.output_tokens,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=one_hour,
        request_id=message.id,
    )


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
            with llmledger.attribute(
                tenant=tenant, feature=feature, user=f"{tenant}-user-{i % 3}", tags={"plan": tier}
            ):
                if provider == "openai":
                    _openai_call(oai, model, prompt)
                else:
                    _anthropic_call(claude, model, prompt)
            progress.advance(task)
        # A fine-tuned model the catalogue cannot know: flagged as unpriced, never $0.
        with llmledger.attribute(tenant="acme", feature="chat", tags={"plan": "pro"}):
            _openai_call(oai, "ft:gpt-4o-mini:acme::demo", "classify this ticket")
        progress.advance(task)
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
    console.print(
        f"\nTry: [bold]llmledger report --ledger {path} --by day,tenant[/bold]  "
        f"or  [bold]llmledger events --ledger {path} --tenant acme[/bold]"
    )
    llmledger.shutdown()
