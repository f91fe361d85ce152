"""The SHA-256 of the dashboard's front-end sources (web/), recorded beside the built bundle.

`make web` builds web/ into src/llmledger/dashboard/static/ (checked in, so neither CI nor a wheel
user needs Node) and writes this digest to static/SOURCES.sha256; tests/test_dashboard_static.py
fails when the sources changed and the bundle was not rebuilt.

Usage: python tools/web_sources.py            print the digest
       python tools/web_sources.py --write    write it to static/SOURCES.sha256
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
RECORD = ROOT / "src" / "llmledger" / "dashboard" / "static" / "SOURCES.sha256"
TOP = ("index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts")


def sources() -> list[Path]:
    """Every file the build reads from web/ (not node_modules), in a fixed order."""
    files = [WEB / name for name in TOP] + sorted(p for p in (WEB / "src").rglob("*") if p.is_file())
    return sorted(files, key=lambda p: p.relative_to(WEB).as_posix())


def digest() -> str:
    """Hex SHA-256 over each source's relative path and bytes."""
    h = hashlib.sha256()
    for path in sources():
        data = path.read_bytes()
        h.update(f"{path.relative_to(WEB).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        RECORD.write_text(digest() + "\n")
    else:
        print(digest())
