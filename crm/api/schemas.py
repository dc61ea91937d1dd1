"""Shapes shared by every router: strict request bodies and list envelopes."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently lost."""

    model_config = ConfigDict(extra="forbid")


class ListOut(BaseModel, Generic[T]):
    """Every list response: ``{"items": [...], "next_cursor": ...}``."""

    items: list[T]
    next_cursor: str | None = None
