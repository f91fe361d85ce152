"""Spend limits: the limit model, windows, and enforcement (storage lives in `llmledger.storage.limits`).

Named `limit` (singular) because `llmledger.limits()` is a public function.
"""
