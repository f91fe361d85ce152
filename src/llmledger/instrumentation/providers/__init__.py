"""One module per provider SDK: what to patch, and how to read usage from its responses."""
