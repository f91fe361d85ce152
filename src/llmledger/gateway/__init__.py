"""The metering gateway: OpenAI- and Anthropic-compatible HTTP endpoints that relay calls to the
providers and meter, attribute and limit each one through the engine (docs/gateway.md).

`create_gateway(settings, engine)` returns a raw ASGI app; `llmledger proxy` serves it alone,
`llmledger serve` beside the server's API.
"""

from llmledger.gateway.app import Gateway, create_gateway
from llmledger.gateway.guard import DEFAULT_UPSTREAMS, AllowList
from llmledger.gateway.settings import GatewaySettings, RouteConfig

__all__ = ["DEFAULT_UPSTREAMS", "AllowList", "Gateway", "GatewaySettings", "RouteConfig", "create_gateway"]
