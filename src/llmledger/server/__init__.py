"""The llmledger server (`llmledger serve`, extra `server`): the HTTP door onto one engine.

```python
from llmledger.server import ServerSettings, create_app
app = create_app(ServerSettings(ledger="sqlite:///ledger.db"))   # any ASGI server runs it
```
"""

from llmledger.server.app import create_app
from llmledger.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
