"""Auto-instrumentation of the provider SDKs: `init()` calls `instrument()`; `uninstrument()` undoes it.

Each provider is installed whole or not at all; an SDK that is not imported yet is patched right
after its first import. See docs/providers.md for what each SDK covers.

The billable SDK methods also get a small "labels" patch that takes `ledger_*` keywords off the
call. It stays after `uninstrument()` (and is installed by `init(enabled=False)`): switched off,
llmledger drops the labels, so a labelled call still works exactly like the bare SDK call.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from llmledger.errors import ConfigError
from llmledger.instrumentation import imports
from llmledger.instrumentation.patching import PatchSet

__all__ = ["PROVIDERS", "instrument", "instrumented", "keep_labels", "uninstrument"]

log = logging.getLogger("llmledger")

PROVIDERS: dict[str, str] = {"openai": "openai", "anthropic": "anthropic", "google": "google.genai"}
"""Instrumentable SDKs: the name `init(providers=[...])` takes -> the module that must be imported."""

_lock = threading.RLock()
_installed: dict[str, PatchSet] = {}
_wanted: set[str] = set()
_labels: dict[str, PatchSet] = {}


def _installer(name: str) -> Callable[[PatchSet], None]:
    if name == "google":
        from llmledger.instrumentation.genai import install as install_genai

        return install_genai

    from llmledger.instrumentation.stainless import install

    return lambda patches: install(_spec(name), patches)


def _spec(name: str) -> Any:
    if name == "openai":
        from llmledger.instrumentation.providers.openai import SPEC
    else:
        from llmledger.instrumentation.providers.anthropic import SPEC
    return SPEC


def _install_labels(name: str) -> None:
    if name in _labels:
        return
    patches = PatchSet()
    active = functools.partial(_installed.__contains__, name)
    try:
        if name == "google":
            from llmledger.instrumentation.genai import install_labels as genai_labels

            genai_labels(patches, active)
        else:
            from llmledger.instrumentation.stainless import install_labels

            install_labels(_spec(name), patches, active)
    except LookupError as exc:
        patches.remove()
        log.warning(
            "llmledger: ledger_* keywords are not taken off %s calls (unsupported version?): %s", name, exc
        )
        return
    _labels[name] = patches


def _install(name: str) -> None:
    with _lock:
        _install_labels(name)
        if name in _installed or name not in _wanted:
            return
        patches = PatchSet()
        try:
            _installer(name)(patches)
        except LookupError as exc:
            patches.remove()
            log.warning("llmledger: the %s SDK is not instrumented (unsupported version?): %s", name, exc)
            return
        _installed[name] = patches


def instrument(providers: Iterable[str] | None = None) -> None:
    """Patch exactly the SDKs in `providers` (default: all of `PROVIDERS`), unpatching any other.

    Idempotent and thread-safe; an SDK not imported yet is patched right after its first import.
    """
    names = list(PROVIDERS) if providers is None else list(providers)
    unknown = [p for p in names if p not in PROVIDERS]
    if unknown:
        raise ConfigError(f"unknown provider(s) {unknown}; instrumentable: {', '.join(PROVIDERS)}")
    with _lock:
        for name in [n for n in _installed if n not in names]:
            _installed.pop(name).remove()
        _wanted.clear()
        _wanted.update(names)
        for name in names:
            if name not in _installed:
                imports.when_imported(PROVIDERS[name], functools.partial(_install, name))
    keep_labels()


def uninstrument() -> None:
    """Restore every metering patch's original method exactly; only the labels patch stays, which
    drops `ledger_*` keywords (and a `labels()` header) so labelled calls keep working unmetered."""
    with _lock:
        _wanted.clear()
        for patches in _installed.values():
            patches.remove()
        _installed.clear()
    keep_labels()


def keep_labels() -> None:
    """Make sure every SDK (now or when first imported) takes `ledger_*` keywords off its calls."""
    with _lock:
        for name, module in PROVIDERS.items():
            if name not in _labels:
                imports.when_imported(module, functools.partial(_install, name))


def instrumented() -> list[str]:
    """The providers whose SDK is patched now."""
    with _lock:
        return sorted(_installed)
