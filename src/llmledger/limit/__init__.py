"""Spend limits as pure data and arithmetic: the limit model and its definition, windows, a request's
`Shape` (and reading it from a body), and its worst-case cost. Storage lives in
`llmledger.storage.limits`; enforcement (reserve, settle, release) in `llmledger.engine.limits`.

Named `limit` (singular) because `llmledger.limits()` is a public function.
"""
