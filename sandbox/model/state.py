"""The model emulator's state: injected faults and the completion calls it received."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

FaultKind = Literal["server_error", "rate_limit", "slow"]


class FaultRequest(BaseModel):
    """Faults to inject into the next ``count`` completion calls."""

    kind: FaultKind
    count: int = Field(default=1, ge=1, le=10_000)
    seconds: float = Field(default=0.0, ge=0.0, le=600.0)


@dataclass(frozen=True)
class Fault:
    """One completion call's injected fault."""

    kind: FaultKind
    seconds: float = 0.0


@dataclass
class SandboxModel:
    """The emulator's state: pending faults and the completion requests it received."""

    faults: deque[Fault] = field(default_factory=deque)
    calls: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_faults(self, kind: FaultKind, count: int = 1, seconds: float = 0.0) -> None:
        """Make the next ``count`` completion calls fail (or stall) the given way."""
        self.faults.extend(Fault(kind, seconds) for _ in range(count))

    def next_fault(self) -> Fault | None:
        """The fault of the call being answered, if any is pending."""
        return self.faults.popleft() if self.faults else None

    def reset(self) -> None:
        """Forget pending faults and recorded calls."""
        self.faults.clear()
        self.calls.clear()

    def next_id(self) -> str:
        """A fresh completion id."""
        return f"chatcmpl-sandbox-{next(self._ids)}"
