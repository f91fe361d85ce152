"""The gateway when things go wrong: upstream errors and timeouts pass through and are recorded,
routes fall back, a client that hangs up mid-stream is billed what was streamed (estimated) and the
upstream is cancelled, bad headers are refused clearly, provider keys never reach logs or ledger."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from tests.fakes.upstream import Upstream
from tests.gateway_rig import rig

MESSAGES = [{"role": "user", "content": "Say hello to everybody in the room, please."}]
ROUTE_KEY = "sk-route-secret-789"


def test_upstream_500_passes_through_and_is_recorded(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.upstream.statuses = [500]
        with pytest.raises(openai.InternalServerError, match="upstream says 500"):
            r.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        [event] = r.events()
    assert (event.status, event.error_type, event.cost_usd, event.complete) == ("error", "HTTP 500", 0, False)


def test_anthropic_429_from_upstream_is_the_sdks_rate_limit_error(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.upstream.statuses = [429]
        with pytest.raises(anthropic.RateLimitError):
            r.anthropic().messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)
        [event] = r.events()
    assert event.status == "error" and event.error_type == "HTTP 429"


def test_upstream_timeout_is_504_in_the_providers_format(tmp_path: Path) -> None:
    with rig(tmp_path, read_timeout=0.3) as r:
        r.upstream.hang = 1.0
        with pytest.raises(openai.InternalServerError, match="did not answer in time") as caught:
            r.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        [event] = r.events()
    assert caught.value.status_code == 504
    assert (event.status, event.error_type) == ("error", "upstream_timeout")


def test_fallback_route_on_5xx_with_the_servers_key(tmp_path: Path) -> None:
    routes = [
        {"model": "gpt-4o*", "upstream": "UPSTREAM/v1", "key": ROUTE_KEY, "provider": "openai"},
        {"model": "gpt-4o*", "upstream": "UPSTREAM/v1/", "key": ROUTE_KEY, "provider": "openai"},
    ]
    with rig(tmp_path, routes=routes) as r:
        r.upstream.statuses = [503]
        client = openai.OpenAI(base_url=f"{r.url}/v1", api_key=r.key, max_retries=0)  # the ledger key alone
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        failed, ok = r.events()
        seen = r.upstream.fake.seen
        models = client.models.list()
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert (failed.status, failed.error_type, ok.status) == ("error", "HTTP 503", "ok")
    assert [s.headers["authorization"] for s in seen] == [f"Bearer {ROUTE_KEY}"] * 2
    assert models.data == []  # routes by glob only: no exact model names to list


def test_client_disconnect_mid_stream_bills_what_was_streamed(tmp_path: Path) -> None:
    with rig(tmp_path, upstream=Upstream(delay=0.02)) as r:
        r.upstream.stall_after = 4  # the upstream sends 4 events, then would keep the stream open
        stream = r.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        got = [next(stream) for _ in range(3)]
        stream.close()
        deadline = time.monotonic() + 10
        while r.upstream.closed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        [event] = r.wait_events(1)
    assert r.upstream.closed == 1  # the upstream request was cancelled
    assert "".join(c.choices[0].delta.content or "" for c in got) == "Hello there"
    assert event.status == "cancelled" and event.estimated and not event.complete
    assert event.input_tokens > 0 and event.output_tokens >= 2  # "Hello there" at least, counted
    assert event.cost_usd is not None and event.cost_usd > 0


_CUT = (openai.APIConnectionError, anthropic.APIConnectionError, httpx2.TransportError)
"""What the SDKs raise when a provider's stream is cut (httpx2's RemoteProtocolError, or wrapped)."""


def _read_until_cut(chunks: Any) -> tuple[int, BaseException | None]:
    count = 0
    try:
        for _ in chunks:
            count += 1
    except _CUT as exc:
        return count, exc
    return count, None


def test_an_upstream_cut_mid_stream_is_a_cut_for_the_client_too(tmp_path: Path) -> None:
    # Regression (newcomer report, 2026-12-02, item 5): the gateway ended its own answer cleanly
    # after the upstream broke off, so the SDKs finished a truncated answer without an error.
    with rig(tmp_path) as r:
        r.upstream.cut_after = 3
        stream = r.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        got, failure = _read_until_cut(stream)
        assert failure is not None and 0 < got <= 3
        [event] = r.wait_events(1)
        r.upstream.cut_after = 3
        client = r.anthropic()
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES) as s:
            _, failure = _read_until_cut(s.text_stream)
        assert failure is not None
        [_, second] = r.wait_events(2)
    for recorded in (event, second):
        assert recorded.status == "error" and recorded.estimated and not recorded.complete
        assert recorded.error_type == "UpstreamError"


def test_anthropic_disconnect_keeps_the_reported_input(tmp_path: Path) -> None:
    with rig(tmp_path, upstream=Upstream(delay=0.02)) as r:
        r.upstream.stall_after = 5
        with r.anthropic().messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=MESSAGES) as s:
            pieces = []
            for text in s.text_stream:
                pieces.append(text)
                if len(pieces) == 2:
                    break
        deadline = time.monotonic() + 10
        while r.upstream.closed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        [event] = r.wait_events(1)
    assert event.input_tokens == 7025  # message_start's exact counts survive the cut
    assert event.estimated and event.status == "cancelled" and event.output_tokens >= 1


@pytest.mark.parametrize(
    ("headers", "status", "match"),
    [
        ({"X-Ledger-Tenant": "x" * 300}, 400, "tenant must be a non-empty string"),
        ({"X-Ledger-User": ""}, 400, "user must be a non-empty string"),
        ({"X-Ledger-Tag-": "v"}, 400, "name the tag"),
        ({"X-Ledger-Key": "llk_nope"}, 401, "invalid llmledger key"),
        ({"X-Ledger-Upstream": "ftp://x"}, 403, "only http and https"),
    ],
)
def test_bad_headers_are_refused_clearly(
    tmp_path: Path, headers: dict[str, str], status: int, match: str
) -> None:
    with rig(tmp_path) as r:
        client = r.openai(**headers)
        with pytest.raises(openai.APIStatusError, match=match) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert caught.value.status_code == status
        assert r.upstream.fake.seen == [] and r.events() == []


def test_non_utf8_header_and_bound_tenant(tmp_path: Path) -> None:
    with rig(tmp_path, tenant="acme") as r:
        answer = httpx2.post(
            f"{r.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers=[
                (b"X-Ledger-Key", r.key.encode()),
                (b"X-Ledger-Upstream", f"{r.upstream_url}/v1".encode()),
                (b"Authorization", b"Bearer sk-x"),
                (b"X-Ledger-User", b"\xff\xfe"),
            ],
        )
        assert answer.status_code == 400 and "not UTF-8" in answer.json()["error"]["message"]
        with pytest.raises(openai.PermissionDeniedError, match="bound to tenant 'acme'"):
            r.openai(**{"X-Ledger-Tenant": "other"}).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
        r.openai().chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        [event] = r.events()
    assert event.tenant == "acme"


def test_provider_keys_never_reach_logs_or_ledger(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    routes = [{"model": "gpt-4o-mini", "upstream": "UPSTREAM/v1", "key": ROUTE_KEY, "provider": "openai"}]
    with rig(tmp_path, routes=routes) as r:
        r.openai().chat.completions.create(model="gpt-4o", messages=MESSAGES)  # the client's key
        stream = openai.OpenAI(base_url=f"{r.url}/v1", api_key=r.key, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        list(stream)
        r.upstream.statuses = [500]
        with pytest.raises(openai.InternalServerError):
            r.openai().chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert len(r.wait_events(3)) == 3
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in ("sk-provider-secret-123", ROUTE_KEY):
        assert secret not in caplog.text
        assert secret.encode() not in stored


def test_a_compressed_request_body_is_refused_as_such(tmp_path: Path) -> None:
    # Newcomer report 2026-12-02 item 15: a gzip body was answered "must be a JSON object".
    import gzip
    import json

    with rig(tmp_path) as r:
        body = gzip.compress(json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES}).encode())
        answer = httpx2.post(
            f"{r.url}/v1/chat/completions",
            content=body,
            headers={**r.headers(), "Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert answer.status_code == 415, answer.text
        assert "Content-Encoding 'gzip' is not supported" in answer.json()["error"]["message"]
        assert r.upstream.fake.seen == []
