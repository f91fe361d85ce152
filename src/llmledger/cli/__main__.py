"""`python -m llmledger.cli`: the `llmledger` command."""

from llmledger.cli import main

main()
