"""The prompt tokens OpenAI reports for a chat request: OpenAI's cookbook formula, real tokenizer.

(`num_tokens_from_messages` and `num_tokens_for_tools` of "How to count tokens with tiktoken", for
gpt-4o / gpt-4o-mini / gpt-5 family models.) The fake provider can answer with it, so strict limits
are tested against the count the provider would report.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import bpe_openai


def openai_prompt_tokens(body: Mapping[str, Any], encoding: str = "o200k_base") -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        enc = bpe_openai.get_encoding(encoding)

    def n(text: str) -> int:
        return len(enc.encode_ordinary(text))

    total = 3
    for message in body.get("messages", []):
        total += 3
        for key, value in message.items():
            if isinstance(value, str):
                total += n(value)
            if key == "name":
                total += 1
    tools = body.get("tools") or []
    if tools:
        total += _tools(tools, n)
    return total


def _tools(tools: list[Mapping[str, Any]], n: Any) -> int:
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = 7, 3, 3, -3, 3, 12
    total = 0
    for tool in tools:
        function = tool["function"]
        total += func_init
        desc = (function.get("description") or "").rstrip(".")
        total += n(f"{function['name']}:{desc}")
        properties = function.get("parameters", {}).get("properties", {})
        if properties:
            total += prop_init
            for key, prop in properties.items():
                total += prop_key
                if "enum" in prop:
                    total += enum_init
                    for item in prop["enum"]:
                        total += enum_item + n(item)
                p_desc = (prop.get("description") or "").rstrip(".")
                total += n(f"{key}:{prop['type']}:{p_desc}")
    return total + func_end
