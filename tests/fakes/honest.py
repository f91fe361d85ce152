"""An OpenAI chat endpoint that bills like OpenAI and honours the request: the prompt tokens OpenAI
would report (cookbook formula, real tokenizer), at most `max_tokens` per choice times `n`, and the
service tier it was asked for (`auto` is served at priority: the dearest tier it may get).

`out` picks the completion tokens per choice (given the cap); `log` (a path) gets one line per served
request, so counts survive the process (the issue's fake provider did the same).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
from tests.fakes.prompt_tokens import openai_prompt_tokens

from llmledger.pricing.pricer import Pricer


class Honest:
    def __init__(
        self, out: Callable[[int], int] | None = None, log: str | None = None, seed: int = 0
    ) -> None:
        rng = random.Random(seed)
        lock = threading.Lock()

        def pick(cap: int) -> int:
            with lock:
                return rng.randint(1, cap)

        self.out = out or pick
        self.log = log
        self.served = 0
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.read())
        cap = body.get("max_completion_tokens") or body.get("max_tokens") or 4096
        n = body.get("n") or 1
        tier = body.get("service_tier")
        served_tier = (
            "priority" if tier in ("auto", "priority") else ("flex" if tier == "flex" else "default")
        )
        completion = sum(min(cap, self.out(cap)) for _ in range(n))
        prompt = openai_prompt_tokens(body)
        with self._lock:
            self.served += 1
            self.bodies.append(body)
            if self.log:
                with open(self.log, "a", encoding="utf-8") as f:
                    f.write(f"{prompt} {completion} {served_tier}\n")
        answer = {
            "id": "chatcmpl-h",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "service_tier": served_tier,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        return httpx2.Response(
            200, content=json.dumps(answer).encode(), headers={"content-type": "application/json"}
        )

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self.handle))


def billed(log: Any, model: str) -> Decimal:
    """What an `Honest` provider billed, from its log, at the tier it served (genai-prices' price)."""
    pricer, now, total = Pricer(), datetime.now(timezone.utc), Decimal(0)
    for line in Path(log).read_text().splitlines():
        prompt, completion, tier = line.split()
        usage = {"input_tokens": int(prompt), "output_tokens": int(completion)}
        cost = pricer.price("openai", model, usage, now, None if tier == "default" else tier).cost
        assert cost is not None
        total += cost
    return total
