"""A list of events that waits for the writer thread before it is read (events are built there)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, SupportsIndex, overload

import llmledger
from llmledger.events import UsageEvent


class Recorded(list[UsageEvent]):
    """Pass `.append` as `on_event`; reading the list first flushes llmledger's writer."""

    def _settle(self) -> None:
        llmledger.flush()

    def __iter__(self) -> Iterator[UsageEvent]:
        self._settle()
        return super().__iter__()

    def __len__(self) -> int:
        self._settle()
        return super().__len__()

    @overload
    def __getitem__(self, i: SupportsIndex) -> UsageEvent: ...
    @overload
    def __getitem__(self, i: slice) -> list[UsageEvent]: ...
    def __getitem__(self, i: Any) -> Any:
        self._settle()
        return super().__getitem__(i)

    def __eq__(self, other: object) -> bool:
        self._settle()
        return list(super().__iter__()) == other

    __hash__ = None  # type: ignore[assignment]
