"""Install and remove patches on SDK classes, exactly and idempotently (the OpenTelemetry way).

A patch replaces one attribute of one class with a wrapper that carries `__wrapped__` (the
original) and a marker. Removing a patch restores the original only if the attribute is still our
wrapper, so a patch someone laid over ours is left alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["MARK", "Patch", "PatchSet", "Target", "resolve"]

MARK = "__llmledger_patch__"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a patch goes: `module`, a class in it (dotted for nested), an attribute of the class."""

    module: str
    cls: str
    attr: str

    def __str__(self) -> str:
        return f"{self.module}.{self.cls}.{self.attr}"


@dataclass(frozen=True, slots=True)
class Patch:
    """One installed patch."""

    owner: type
    attr: str
    original: Any
    wrapper: Any


def resolve(target: Target) -> tuple[type, Any]:
    """The class `target` names and its current attribute; raises LookupError saying what is missing."""
    try:
        owner: Any = importlib.import_module(target.module)
    except ImportError as exc:
        raise LookupError(f"cannot import {target.module}: {exc}") from exc
    for part in target.cls.split("."):
        owner = getattr(owner, part, None)
        if owner is None:
            raise LookupError(f"{target.module} has no class {target.cls}")
    if not isinstance(owner, type) or target.attr not in owner.__dict__:
        raise LookupError(f"{target.module}.{target.cls} has no attribute {target.attr!r}")
    return owner, owner.__dict__[target.attr]


class PatchSet:
    """The patches of one provider: all installed, or none."""

    def __init__(self) -> None:
        self.patches: list[Patch] = []

    def add(self, target: Target, make: Callable[[Any], Any]) -> None:
        """Wrap `target`'s current attribute with `make(original)` (skipped if already ours)."""
        owner, original = resolve(target)
        if getattr(original, MARK, False):
            return
        wrapper = make(original)
        wrapper.__wrapped__ = original
        setattr(wrapper, MARK, True)
        setattr(owner, target.attr, wrapper)
        self.patches.append(Patch(owner, target.attr, original, wrapper))

    def remove(self) -> None:
        """Restore every original whose attribute is still our wrapper."""
        while self.patches:
            patch = self.patches.pop()
            if patch.owner.__dict__.get(patch.attr) is patch.wrapper:
                setattr(patch.owner, patch.attr, patch.original)
