"""The dashboard end to end: a real `llmledger serve` process, Debian's Chromium driven by Playwright.

Logs in with the link `llmledger serve` prints, renders every page on demo data, checks that the
numbers on the page are the API's (and change with the filters), that the CSV export holds exactly
the filtered events, that a tenant-bound key sees only its tenant, and that a read key cannot
change limits (nor can a change without the CSRF token). Screenshots at 1280 px (and one at 800 px,
dark) go to docs/dashboard/ for docs/dashboard.md.
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from tests.serving import serve_thread

from llmledger.cli.server_cmd import dashboard_link
from llmledger.events import UsageEvent
from llmledger.events.ids import uuid7
from llmledger.server import ServerSettings, create_app
from llmledger.storage import Ledger
from llmledger.storage.keys import KeyStore

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent.parent / "docs" / "dashboard"
ADMIN = "llk_0123456789abcdef_e2e-admin-secret-0123456789"
TENANTS = ["acme", "globex", "initech"]
MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"), ("google", "gemini-2.5-flash")]


def _demo_events(n: int) -> list[UsageEvent]:
    """Demo traffic of three tenants over the last 40 days (some errors, unpriced and estimated)."""
    rng = random.Random(13)
    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        provider, model = rng.choice(MODELS)
        tenant = rng.choice(TENANTS)
        tokens = rng.randrange(100, 3000)
        out.append(
            UsageEvent(
                event_id=uuid7(),
                timestamp=now - timedelta(days=40) * (1 - i / n) - timedelta(seconds=30),
                provider=provider,
                model=model,
                input_tokens=tokens,
                output_tokens=tokens // 5,
                cache_read_tokens=tokens // 4,
                cost_usd=None if i % 97 == 0 else (Decimal(tokens) * Decimal("0.0000021")),
                status="error" if i % 41 == 0 else "ok",
                estimated=i % 53 == 0,
                tenant=tenant,
                user=f"{tenant}-user-{rng.randrange(4)}",
                feature=rng.choice(["chat", "search", "summarize"]),
            )
        )
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")
    path = str(tmp_path_factory.mktemp("e2e") / "demo.db")
    ledger = Ledger(path)
    ledger.write(_demo_events(1500))
    keys = KeyStore(ledger.engine)
    read = keys.create("read", name="viewer").secret
    acme = keys.create("read", tenant="acme", name="acme viewer").secret
    ledger.close()
    app = create_app(ServerSettings.load({"ledger": path, "admin_key": ADMIN}))
    with serve_thread(app) as url:
        # the link `llmledger serve` prints (cli/server_cmd.py prints exactly this function's answer)
        link = dashboard_link(app, url)
        yield {"url": url, "link": link, "read": read, "acme": acme, "path": path}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def _api(site: dict[str, Any], path: str, key: str = ADMIN, **params: str) -> Any:
    answer = httpx2.get(f"{site['url']}{path}", params=params, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert page.locator("[role=alert]:not(:empty)").count() == 0, page.locator(
        "[role=alert]"
    ).all_inner_texts()


def _shot(page: Any, name: str) -> None:
    """Render the page to PNG (the rendering itself is checked); the screenshots in docs/dashboard/
    are rewritten only with LLMLEDGER_WRITE_SCREENSHOTS=1, so a test run leaves the tree clean."""
    png = page.screenshot(full_page=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("LLMLEDGER_WRITE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / f"{name}.png").write_bytes(png)


def _login_with_key(browser: Any, site: dict[str, Any], key: str) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{site['url']}/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    _ready(page)
    return page


@pytest.fixture(scope="module")
def admin_page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(site["link"])  # the one-time link `llmledger serve` printed
    _ready(page)
    yield page
    page.close()


def test_the_printed_link_logs_in_once_and_the_overview_shows_the_apis_numbers(
    admin_page: Any, site: dict[str, Any], browser: Any
) -> None:
    assert admin_page.url.rstrip("/") == site["url"]
    overview = _api(site, "/api/v1/dashboard/overview", since="30d")
    shown = admin_page.locator("[data-kpi=range] .value").get_attribute("data-value")
    assert Decimal(shown) == Decimal(overview["totals"]["cost_usd"]) > 0
    assert admin_page.locator("canvas").count() == 1
    _shot(admin_page, "overview")
    again = browser.new_page()
    again.goto(site["link"])  # used: back to the login form
    assert "/login" in again.url
    assert again.locator("input[name=key]").count() == 1
    again.close()


def test_filters_change_the_numbers_as_the_api_does(admin_page: Any, site: dict[str, Any]) -> None:
    admin_page.goto(f"{site['url']}/?since=7d&stack=tenant")
    _ready(admin_page)
    week = _api(site, "/api/v1/dashboard/overview", since="7d", stack="tenant")
    assert Decimal(admin_page.locator("[data-kpi=range] .value").get_attribute("data-value")) == Decimal(
        week["totals"]["cost_usd"]
    )
    admin_page.fill("input[data-filter=tenant]", "globex")
    admin_page.press("input[data-filter=tenant]", "Enter")
    admin_page.wait_for_url(re.compile(r"tenant=globex"))
    _ready(admin_page)
    globex = _api(site, "/api/v1/dashboard/overview", since="7d", stack="tenant", tenant="globex")
    shown = Decimal(admin_page.locator("[data-kpi=range] .value").get_attribute("data-value"))
    assert shown == Decimal(globex["totals"]["cost_usd"])
    assert 0 < shown < Decimal(week["totals"]["cost_usd"])
    numbers = admin_page.locator("details.numbers table").text_content() or ""
    assert "globex" in numbers and "acme" not in numbers


def test_every_page_renders(admin_page: Any, site: dict[str, Any], browser: Any) -> None:
    for path, name in [
        ("/tenant?tenant=acme", "tenant"),
        ("/limits", "limits"),
        ("/events", "events"),
        ("/prices?model=gpt-4o-mini", "prices"),
        ("/live", "live"),
    ]:
        admin_page.goto(f"{site['url']}{path}")
        _ready(admin_page)
        _shot(admin_page, name)
    # new events appear on the live page without a reload
    fresh = _demo_events(3)
    for event in fresh:
        object.__setattr__(event, "timestamp", datetime.now(timezone.utc))
    ledger = Ledger(site["path"])
    ledger.write(fresh)
    ledger.close()
    admin_page.wait_for_selector(f"[data-event='{fresh[0].event_id}']", timeout=20_000)
    narrow = browser.new_context(viewport={"width": 800, "height": 900}, color_scheme="dark")
    page = narrow.new_page()
    page.goto(f"{site['url']}/login")
    page.fill("input[name=key]", site["read"])
    page.click("button[type=submit]")
    _ready(page)
    _shot(page, "overview-800-dark")
    narrow.close()


def test_the_events_explorer_pages_and_its_csv_is_what_the_filters_show(
    admin_page: Any, site: dict[str, Any]
) -> None:
    admin_page.goto(f"{site['url']}/events?since=30d&tenant=initech&feature=chat")
    _ready(admin_page)
    first = admin_page.locator("[data-event]").first.get_attribute("data-event")
    admin_page.click("[data-action=next]")
    _ready(admin_page)
    assert admin_page.locator("[data-event]").first.get_attribute("data-event") != first
    admin_page.locator("[data-event]").first.click()
    admin_page.wait_for_selector("[data-detail]")
    href = admin_page.locator("[data-csv]").get_attribute("href")
    body = admin_page.request.get(f"{site['url']}{href}").text()
    rows = list(csv.DictReader(io.StringIO(body)))
    wanted: list[str] = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = _api(
            site, "/api/v1/events", since="30d", tenant="initech", feature="chat", limit="1000", **extra
        )
        wanted += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [r["event_id"] for r in rows] == wanted
    assert len(wanted) > 50
    assert {r["tenant"] for r in rows} == {"initech"}


def test_a_tenant_bound_key_sees_only_its_tenant(browser: Any, site: dict[str, Any]) -> None:
    page = _login_with_key(browser, site, site["acme"])
    tenants = page.locator("section:has(h2:text('Top tenants')) tbody tr").all_inner_texts()
    assert tenants and all(t.startswith("acme") for t in tenants)
    other = page.request.get(f"{site['url']}/api/v1/dashboard/overview?tenant=globex")
    assert other.status == 403
    events = page.request.get(f"{site['url']}/api/v1/dashboard/events?limit=1000").json()["events"]
    assert events and {e["tenant"] for e in events} == {"acme"}
    page.close()


def test_a_read_key_cannot_change_limits_and_changes_need_the_csrf_token(
    browser: Any, site: dict[str, Any]
) -> None:
    page = _login_with_key(browser, site, site["read"])
    page.goto(f"{site['url']}/limits")
    _ready(page)
    has_limits_api = page.locator("[data-limits=absent]").count() == 0
    if has_limits_api:
        assert page.locator("text=Changing limits needs an admin key.").count() == 1
    assert page.locator("form[data-form=limit]").count() == 0
    csrf = page.request.get(f"{site['url']}/api/v1/dashboard/session").json()["csrf"]
    body = {"usd": "10", "per": "day"}
    refused = page.request.post(f"{site['url']}/api/v1/limits", data=body, headers={"X-CSRF-Token": csrf})
    assert refused.status == (403 if has_limits_api else 404)
    # any admin change: the session acts with the read key's scope
    key = page.request.post(
        f"{site['url']}/api/v1/keys", data={"scope": "read"}, headers={"X-CSRF-Token": csrf}
    )
    assert key.status == 403
    page.close()
    admin = _login_with_key(browser, site, ADMIN)
    no_token = admin.request.post(f"{site['url']}/api/v1/keys", data={"scope": "read"})
    assert no_token.status == 403 and "CSRF" in no_token.text()
    admin.close()
