"""The report of an import: its counts and the rows it rejected or warned about."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_REPORTED_ERRORS = 1000


@dataclass(frozen=True)
class RowError:
    """A row's problem: its number in the file (the header is row 1), the field and why.

    ``level`` "error": the row was rejected; "warning": the row was imported without the field
    (a bad identifier beside a good one).
    """

    row: int
    field: str
    reason: str
    level: str = "error"


@dataclass
class ImportResult:
    """What an import did (or, in a dry run, would do)."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0
    warned: int = 0  # rows imported without a bad field

    def as_dict(self) -> dict[str, Any]:
        """The API shape: counts, and the rejected rows and warnings by row."""
        return {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "errors": [
                {"row": e.row, "field": e.field, "reason": e.reason, "level": e.level}
                for e in self.errors
            ],
        }
