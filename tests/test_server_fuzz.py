"""Fuzz the server from its own OpenAPI document (schemathesis): no 500s, answers that match the
documented schemas and status codes, with an admin key, on a real server over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from tests.serving import serve_thread

from llmledger.server import ServerSettings, create_app

ADMIN = "llk_00aa11bb22cc33dd_fuzzing-admin-secret-0123456789"
SPEC = json.loads((Path(__file__).parent.parent / "docs" / "openapi.json").read_text())
schema = schemathesis.openapi.from_dict(SPEC)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ledger = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    app = create_app(ServerSettings(ledger=ledger, admin_key=ADMIN, rate_limit=100_000))  # type: ignore[arg-type]
    with serve_thread(app) as url:
        yield url


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any, base_url: str) -> None:
    # Every other check: no 5xx, documented status codes, content types, headers and bodies. Not
    # "positive data acceptance": a schema cannot say which free-form strings parse as a time
    # (`since=abc`), and those get the documented 422.
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {ADMIN}"},
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
    )
