"""Token estimates for calls whose provider reported no usage: re-exported from
`llmledger.tokens.estimate`, where the pure functions live (the limits engine uses them too)."""

from llmledger.tokens.estimate import estimate_from_chars, estimate_tokens, request_text

__all__ = ["estimate_from_chars", "estimate_tokens", "request_text"]
