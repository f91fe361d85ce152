"""What llmledger's estimate of a text should be: the model's tokenizer count where `llmledger.tokens`
has one (OpenAI models, with bpe-openai installed), else ~4 characters a token."""

from __future__ import annotations

from llmledger.tokens import count_tokens


def expected_tokens(text: str, model: str) -> int:
    """The tokens llmledger's estimate gives `text` for `model` on this machine."""
    counted = count_tokens(text, model)
    return counted if counted is not None else -(-len(text) // 4)
