"""The gateway is never an open relay or an SSRF hole: upstreams off the allow-list, private,
loopback, link-local and metadata addresses (named literally or behind a DNS name) are refused
before anything is sent; redirects are passed back, never followed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import httpx2
import openai
import pytest
from tests.gateway_rig import rig

from llmledger.errors import ConfigError, UpstreamRefused
from llmledger.gateway.guard import AllowList

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/v1",  # loopback, not allowed
        "http://10.0.0.5/v1",  # private
        "http://169.254.169.254/latest/meta-data",  # metadata
        "http://[::1]:8080/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "https://api.openai.com.evil.example/v1",  # a suffix trick
        "https://evil.example/v1",
        "https://user:pw@api.openai.com/v1",  # user info
        "file:///etc/passwd",
        "gopher://api.openai.com/",
        "https://api.openai.com:8443/v1",  # another port
        "https://api.openai.com/v1?x=1",
        "http://api.openai.com/v1",  # another scheme
    ],
)
def test_default_allow_list_refuses(url: str) -> None:
    with pytest.raises(UpstreamRefused):
        AllowList().check(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://API.OpenAI.com./v1",
        "https://api.anthropic.com",
        "https://myres.openai.azure.com/openai/deployments/x",
        "https://openrouter.ai/api/v1",
    ],
)
def test_default_allow_list_allows_provider_hosts(url: str) -> None:
    AllowList().check(url)


def test_path_prefix_entries_do_not_match_siblings() -> None:
    with pytest.raises(UpstreamRefused):
        AllowList().check("https://openrouter.ai/apiary/v1")


def test_operator_entries_reach_private_but_not_metadata() -> None:
    allow = AllowList(["http://10.1.2.3:8000", "http://llm.internal:8000"])
    allow.check("http://10.1.2.3:8000/v1")
    assert allow.screen("llm.internal", ["10.9.9.9", "127.0.0.1"]) == ["10.9.9.9", "127.0.0.1"]
    with pytest.raises(UpstreamRefused, match="metadata"):
        allow.screen("llm.internal", ["169.254.169.254"])
    with pytest.raises(UpstreamRefused, match="link-local"):
        allow.screen("llm.internal", ["169.254.1.1"])
    AllowList(["http://169.254.169.254"]).check(
        "http://169.254.169.254/x"
    )  # named literally: the operator's call


def test_default_entries_reach_public_addresses_only() -> None:
    allow = AllowList()
    assert allow.screen("api.openai.com", ["162.159.140.245"]) == ["162.159.140.245"]
    for address in (
        "127.0.0.1",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "100.100.100.200",
        "::1",
        "fd00::1",
    ):
        with pytest.raises(UpstreamRefused):
            allow.screen("api.openai.com", [address])
    with pytest.raises(UpstreamRefused):  # one bad address refuses the name
        allow.screen("api.openai.com", ["162.159.140.245", "10.0.0.1"])


def test_bad_allow_entries_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="allowed upstream"):
        AllowList(["not a url"])


def test_dns_name_resolving_to_loopback_is_refused_at_connect(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        port = r.upstream_url.rsplit(":", 1)[1]
        r.gateway.router.allow.add(f"http://localhost:{port}", private=False)  # like a default entry
        client = r.openai(**{"X-Ledger-Upstream": f"http://localhost:{port}/v1"})
        with pytest.raises(openai.PermissionDeniedError, match="loopback"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert r.upstream.fake.seen == []  # nothing reached it


def test_redirects_are_passed_back_not_followed(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        r.upstream.redirect = "http://169.254.169.254/latest/meta-data/"
        answer = httpx2.post(
            f"{r.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers=r.headers(),
        )
        assert answer.status_code == 307
        assert answer.headers["location"] == "http://169.254.169.254/latest/meta-data/"
        assert len(r.upstream.fake.seen) == 1


def test_unknown_paths_are_not_relayed(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        for path in ("/v1/batches", "/v1/files", "/anthropic/v1/messages/batches", "/admin"):
            answer = httpx2.post(
                f"{r.url}{path}",
                json={},
                headers={"X-Ledger-Key": r.key, "X-Ledger-Upstream": r.upstream_url},
            )
            assert answer.status_code == 404, path
        assert r.upstream.fake.seen == []


DOT_SEGMENTS = [
    "/v1/../admin",
    "/v1/%2e%2e/admin",
    "/v1/%2E%2e/admin",
    "/v1/.%2e/admin",
    "/v1/./../admin",
    "/v1/..",
    "/v1/%2e",
    "/v1\\..\\admin",
    "/v1/%5c../admin",
    "/v1/x%2F..%2F..%2Fadmin",  # newcomer report 2026-12-02 item 6: an encoded slash
    "/v1/x%2f..%2f..%2fadmin",
    "/v1/%252e%252e/admin",  # encoded twice
    "/v1/x%252F..%252F..%252Fadmin",
]


@pytest.mark.parametrize("path", DOT_SEGMENTS)
def test_dot_segments_never_leave_an_entrys_path(path: str) -> None:
    """Newcomer report item 9: `/v1/../admin` matched the `/v1` entry and reached `/admin`."""
    operator = AllowList(["http://127.0.0.1:18902/v1"])
    with pytest.raises(UpstreamRefused, match="path segments"):
        operator.check(f"http://127.0.0.1:18902{path}")
    with pytest.raises(UpstreamRefused):
        AllowList().check(f"https://api.openai.com{path}")


def test_dot_segments_through_a_real_gateway_never_reach_the_upstream(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        for path in ("/v1/../admin", "/v1/%2e%2e/admin"):
            client = openai.OpenAI(
                base_url=f"{r.url}/v1",
                api_key="sk-x",
                max_retries=0,
                default_headers={"X-Ledger-Key": r.key, "X-Ledger-Upstream": f"{r.upstream_url}{path}"},
            )
            with pytest.raises(openai.PermissionDeniedError, match="path"):
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
        assert r.upstream.fake.seen == []


@pytest.mark.parametrize("model", ["gpt\x00", "", "   ", "m" * 300, 5, ["gpt-4o"]])
def test_a_model_name_the_ledger_cannot_hold_is_refused_before_forwarding(
    tmp_path: Path, model: object
) -> None:
    """Newcomer report item 11: `"model": "gpt\\u0000"` was forwarded and its event stored the NUL."""
    with rig(tmp_path) as r:
        answer = httpx2.post(
            f"{r.url}/v1/chat/completions",
            headers=r.headers(),
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert answer.status_code == 400, answer.text
        assert "model" in answer.json()["error"]["message"]
        assert r.upstream.fake.seen == []
        assert r.events() == []


def test_a_percent_encoded_line_break_never_splits_the_upstream_request(tmp_path: Path) -> None:
    """Review finding: the free routes wrote the DECODED ASGI path into the upstream request line,
    so `%0D%0A` smuggled a second, unmetered request to the upstream."""
    smuggled = (
        "/v1/models/x%20HTTP/1.1%0D%0AHost:%20up%0D%0A%0D%0APOST%20/v1/chat/completions%20HTTP/1.1"
        "%0D%0AContent-Length:%202%0D%0A%0D%0A%7B%7D"
    )
    with rig(tmp_path) as r:
        answer = httpx2.get(
            f"{r.url}{smuggled}",
            headers=r.headers(),
        )
        assert answer.status_code == 200, answer.text
        # the upstream got ONE request, whose path is the whole suffix: nothing was split off
        assert [seen.path for seen in r.upstream.fake.seen] == [unquote(smuggled)]
