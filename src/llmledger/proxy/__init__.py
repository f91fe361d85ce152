"""Clients for the metering gateway: the official SDK clients, pointed at llmledger.

```python
from llmledger.proxy import OpenAI
client = OpenAI(provider_api_key="sk-...", provider_api_base="https://api.openai.com/v1",
                ledger_key="llk_...", ledger_url="http://127.0.0.1:8787",
                extra_headers={"user": "u-42", "plan": "pro", "feature": "chat"})
client.chat.completions.create(model="gpt-4o-mini", messages=[...], extra_headers={"user": "u-7"})
```

`OpenAI`, `AsyncOpenAI` (subclasses of `openai.OpenAI` / `openai.AsyncOpenAI`), `Anthropic`,
`AsyncAnthropic` (of `anthropic.Anthropic` / `anthropic.AsyncAnthropic`): every method, type and
error of the official client, with the gateway's constructor. Each is imported on first use, so
`llmledger.proxy` needs only the SDK you use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmledger.proxy.headers import ledger_headers

if TYPE_CHECKING:
    from llmledger.proxy.anthropic_client import Anthropic, AsyncAnthropic
    from llmledger.proxy.openai_client import AsyncOpenAI, OpenAI

__all__ = ["Anthropic", "AsyncAnthropic", "AsyncOpenAI", "OpenAI", "ledger_headers"]


def __getattr__(name: str) -> Any:
    if name in ("OpenAI", "AsyncOpenAI"):
        from llmledger.proxy import openai_client

        return getattr(openai_client, name)
    if name in ("Anthropic", "AsyncAnthropic"):
        from llmledger.proxy import anthropic_client

        return getattr(anthropic_client, name)
    raise AttributeError(f"module 'llmledger.proxy' has no attribute {name!r}")
