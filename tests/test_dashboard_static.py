"""The checked-in dashboard bundle (src/llmledger/dashboard/static/) is built from the web/ sources
as they are: editing web/ without `make web` fails here (CI does not run Node for the dashboard)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_sources", ROOT / "tools" / "web_sources.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_is_built_from_the_current_sources() -> None:
    tool = _tool()
    recorded = tool.RECORD.read_text().strip()
    assert recorded == tool.digest(), (
        "web/ changed since the bundle was built: run `make web` and commit static/"
    )


def test_the_bundle_references_only_files_it_ships() -> None:
    static = ROOT / "src" / "llmledger" / "dashboard" / "static"
    index = (static / "index.html").read_text()
    assets = sorted(p.name for p in (static / "assets").iterdir())
    assert assets, "no built assets"
    for name in assets:
        assert f"/assets/{name}" in index or name.endswith(".map"), f"{name} is not used by index.html"
    assert "http://" not in index and "https://" not in index  # no CDN
