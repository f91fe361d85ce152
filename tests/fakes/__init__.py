"""Byte-realistic fakes of the provider HTTP APIs, served to the REAL SDK clients in-process."""
