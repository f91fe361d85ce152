"""Run a callback right after a module is first imported (so `init()` never imports an SDK itself).

Importing the provider SDKs costs 0.6-1.8 s each; `init()` patches the ones already imported and
asks to be told when any other is, the way `wrapt`'s post-import hooks do.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = ["cancel", "when_imported"]

_lock = threading.Lock()
_hooks: dict[str, Callable[[], None]] = {}


class _Finder(MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader: Any = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            with _lock:
                hook = _hooks.pop(fullname, None)
            if hook is not None:
                hook()

        loader.exec_module = exec_module
        return spec


_finder = _Finder()


def when_imported(module: str, hook: Callable[[], None]) -> None:
    """Call `hook()` now if `module` is imported, else right after its first import."""
    if module in sys.modules:
        hook()
        return
    with _lock:
        _hooks[module] = hook
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def cancel() -> None:
    """Forget every pending hook."""
    with _lock:
        _hooks.clear()
