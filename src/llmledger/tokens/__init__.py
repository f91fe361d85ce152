"""Offline token counts: OpenAI's public encodings, and a safe upper bound for every other model.

`count_tokens(text, model)` counts exactly with the model's tokenizer where one is public and usable
offline (OpenAI's `o200k_base` / `cl100k_base`, bundled in the `bpe-openai` wheel), and returns None
otherwise (Anthropic and Gemini publish none). `upper_bound_tokens(text)` is a bound that holds for
every byte-level tokenizer: never more tokens than UTF-8 bytes. `prompt_tokens_bound(body, model)`
bounds a whole request's prompt (messages, system prompt, tools) from its JSON body.

Nothing here touches the network, and the tokenizer is loaded on first use (never at
`import llmledger`): `warm()` loads it on a background thread ahead of time.
"""

from llmledger.tokens.count import (
    count_tokens,
    encoding_for_model,
    tokenizer_available,
    upper_bound_tokens,
    warm,
)
from llmledger.tokens.prompt import prompt_tokens_bound

__all__ = [
    "count_tokens",
    "encoding_for_model",
    "prompt_tokens_bound",
    "tokenizer_available",
    "upper_bound_tokens",
    "warm",
]
