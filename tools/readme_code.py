"""Write each ```python block of README.md (and docs/*.md) as its own module, for `mypy --strict`.

Usage: python tools/readme_code.py OUT_DIR [FILE.md ...]  (default: README.md)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.py"):
        old.unlink()
    sources = sys.argv[2:] or ["README.md"]
    count = 0
    for source in sources:
        for i, match in enumerate(BLOCK.finditer(Path(source).read_text(encoding="utf-8"))):
            stem = re.sub(r"\W", "_", Path(source).stem.lower())
            (out / f"{stem}_{i}.py").write_text(match.group(1), encoding="utf-8")
            count += 1
    if not count:
        sys.exit(f"no ```python blocks in {', '.join(sources)}")
    print(f"{count} python block(s) from {', '.join(sources)} -> {out}")


if __name__ == "__main__":
    main()
