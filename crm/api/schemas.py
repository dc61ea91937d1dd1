"""Shapes shared by every router: strict request bodies and list envelopes."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator

T = TypeVar("T")

# Ids are 32-bit integers: a larger path id is a 422, never a database overflow error.
MAX_ID = 2**31 - 1


def _reject_null(cls: type[BaseModel], value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null (leave the field out to keep its value)")
    return value


def not_null(*fields: str) -> Any:
    """A validator for PATCH bodies: these fields may be left out but not set to null."""
    # Defaults are not validated, so only an explicit null reaches the check.
    return field_validator(*fields)(classmethod(_reject_null))


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently lost."""

    model_config = ConfigDict(extra="forbid")


class ListOut(BaseModel, Generic[T]):
    """Every list response: ``{"items": [...], "next_cursor": ...}``."""

    items: list[T]
    next_cursor: str | None = None
