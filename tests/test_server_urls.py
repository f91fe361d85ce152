"""`init(server=...)` and `llmledger.Client(...)` take `http(s)://host[:port][/path]` and refuse
everything else with a `ConfigError` (newcomer report item 14: raw ValueError, or accepted)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import llmledger
from llmledger.errors import ConfigError
from llmledger.remote.http import server_url

KEY = "llk_0123456789abcdef_server-url-test-key-0000001"
BAD = [
    "http://127.0.0.1:99999",
    "http://127.0.0.1:0",
    "http://[::1",
    "http://a b",
    "http://127.0.0.1:8787?x=1",
    "http://127.0.0.1:8787/#frag",
    "http://127.0.0.1:8787/\x00",
    "http://user:pw@127.0.0.1:8787",
    "ftp://127.0.0.1",
    "127.0.0.1:8787",
    "http://",
]
GOOD = [
    "http://127.0.0.1:8787",
    "https://ledger.example.com",
    "http://[::1]:8787/",
    "https://h.example/ledger",
]


@pytest.mark.parametrize("url", BAD)
def test_bad_server_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="server must be"):
        llmledger.init(server=url, api_key=KEY)
    with pytest.raises(ConfigError, match="server must be"):
        llmledger.Client(url, api_key=KEY)


@pytest.mark.parametrize("url", GOOD)
def test_good_server_urls_pass(url: str) -> None:
    assert server_url(url).hostname


@given(st.text(max_size=60))
def test_any_text_is_a_url_or_a_config_error(text: str) -> None:
    try:
        parts = server_url(text)
    except ConfigError:
        return
    assert parts.scheme in ("http", "https") and parts.hostname
