"""`llmledger doctor`: is llmledger set up right here? Exit 1 when something is wrong.

It checks, without changing anything (a missing ledger is not created, an old schema not upgraded):
the ledger (where, reachable, schema version, events), quarantined events, unpriced models, the
spend limits in force and whether their counters equal the events, the provider SDKs installed,
and the switches in the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import typer
from rich.text import Text

from llmledger.cli.app import LedgerOpt, app, console

__all__ = ["doctor"]

SDKS = (("openai", "openai", "3.0"), ("anthropic", "anthropic", "2.0"), ("google", "google-genai", "3.0"))
"""(provider, distribution, oldest supported version)."""


@dataclass
class Findings:
    """What the doctor found: lines of (level, text); any `fail` makes the exit status 1."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.lines.append(("ok", text))

    def warn(self, text: str) -> None:
        self.lines.append(("warn", text))

    def fail(self, text: str) -> None:
        self.lines.append(("FAIL", text))

    @property
    def failed(self) -> bool:
        return any(level == "FAIL" for level, _ in self.lines)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _check_sdks(found: Findings) -> None:
    seen = []
    for provider, dist, oldest in SDKS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        seen.append(provider)
        if _version_tuple(version) < _version_tuple(oldest):
            found.fail(f"SDK {dist} {version} is older than the oldest supported ({oldest}): upgrade it")
        else:
            found.ok(f"SDK {dist} {version} (instrumented by init())")
    if not seen:
        found.warn("no provider SDK installed (openai, anthropic, google-genai): only track() can record")


def _check_ledger(found: Findings, target: str) -> None:
    import sqlalchemy as sa

    from llmledger._urls import redact_url
    from llmledger.errors import LlmLedgerError
    from llmledger.storage.engine import create_ledger_engine, sqlite_path
    from llmledger.storage.migrate import HEAD, current_revision

    path = sqlite_path(target)
    if path is not None and not Path(path).is_file():
        found.fail(f"no ledger at {path} (check --ledger or LLMLEDGER_DB; init() creates it on first use)")
        return
    try:
        engine = create_ledger_engine(target)
        revision = current_revision(engine)
    except (LlmLedgerError, sa.exc.SQLAlchemyError, OSError) as exc:
        found.fail(f"cannot open the ledger {redact_url(target)}: {exc}")
        return
    where = path or engine.url.render_as_string(hide_password=True)
    if revision != HEAD:
        found.fail(
            f"ledger {where}: schema {revision or 'none'}, expected {HEAD} "
            "(opening it with init() upgrades it)"
        )
        engine.dispose()
        return
    found.ok(f"ledger {where}: schema {revision}")
    try:
        _check_contents(found, engine)
    finally:
        engine.dispose()


def _check_contents(found: Findings, engine: object) -> None:
    import sqlalchemy as sa

    from llmledger.storage.tables import events

    assert isinstance(engine, sa.engine.Engine)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
        found.ok(f"{total:,} event(s) recorded")
        names = sa.inspect(conn).get_table_names()
        for name in (n for n in names if "quarantine" in n):
            held = conn.execute(sa.text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
            if held:
                found.fail(f"{held:,} quarantined event(s) in {name}: see `llmledger quarantine list`")
            else:
                found.ok("no quarantined events")
        unpriced = conn.execute(
            sa.select(events.c.provider, events.c.model, sa.func.count())
            .where(events.c.cost_usd.is_(None))
            .group_by(events.c.provider, events.c.model)
            .order_by(sa.func.count().desc())
        ).all()
    if unpriced:
        models = ", ".join(f"{p}/{m} ({n:,})" for p, m, n in unpriced[:10])
        more = f" and {len(unpriced) - 10} more" if len(unpriced) > 10 else ""
        found.fail(
            f"unpriced events of {len(unpriced)} model(s): {models}{more}; add prices (docs/pricing.md)"
        )
    else:
        found.ok("every event is priced")


def _check_limits(found: Findings, target: str) -> None:
    import llmledger
    from llmledger.cli.limits_cmd import scope_text
    from llmledger.sdk import limits as L

    llmledger.init(ledger=target, instrument=False)
    defined = L.limits()
    if not defined:
        found.ok("no spend limits defined")
        return
    for limit in defined:
        unit = "$" if limit.metric == "usd" else ""
        tail = "" if limit.metric == "usd" else f" {limit.metric}"
        found.ok(
            f"limit {limit.id}: {unit}{limit.amount}{tail} per {limit.window.describe()} "
            f"({scope_text(limit)}; {limit.mode})"
        )
    diffs = L.reconcile()
    if diffs:
        found.fail(
            f"{len(diffs)} limit counter(s) differ from the ledger's events: run `llmledger reconcile`"
        )
    else:
        found.ok("limit counters equal the ledger's events")


@app.command()
def doctor(ledger: LedgerOpt = None) -> None:
    """Check the ledger, prices, limits, SDKs and switches; exit 1 if something is wrong."""
    from llmledger.sdk.runtime import DEFAULT_DB

    found = Findings()
    target = ledger if ledger is not None else os.environ.get("LLMLEDGER_DB") or DEFAULT_DB
    _check_ledger(found, target)
    if not any(
        level == "FAIL" and text.startswith(("no ledger", "cannot open", "ledger"))
        for level, text in found.lines
    ):
        _check_limits(found, target)
    _check_sdks(found)
    if os.environ.get("LLMLEDGER_DISABLED", "").strip().lower() in ("1", "true", "yes", "on"):
        found.warn("LLMLEDGER_DISABLED is set: nothing is metered in processes that see it")
    for level, text in found.lines:
        style = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}[level]
        console.print(Text.assemble((f"{level:<4} ", style), text))
    console.print(Text("something is wrong (see FAIL above)" if found.failed else "all good"))
    if found.failed:
        raise typer.Exit(1)
