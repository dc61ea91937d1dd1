"""Shapes shared by every router: strict request bodies and list envelopes."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from annotated_types import Interval
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm.errors import ValidationFailed
from crm.services.text import find_control, json_problem

T = TypeVar("T")

# Integers are bounded by the column they end up in: a larger one is a 422 naming the field,
# never a database overflow error (PostgreSQL INT is 32-bit, BIGINT and SQLite 64-bit).
MAX_ID = 2**31 - 1
MAX_BIG = 2**63 - 1
# The same types serve path, query and body parameters.
Id = Annotated[int, Interval(ge=1, le=MAX_ID)]  # a row of a table with an INT key
BigId = Annotated[int, Interval(ge=1, le=MAX_BIG)]  # a row of a table with a BIGINT key
TelegramId = Annotated[int, Interval(ge=1, le=MAX_BIG)]  # a Telegram user id (BIGINT)
Count = Annotated[int, Interval(ge=0, le=MAX_ID)]  # any other INT column
PageLimit = Annotated[int, Interval(ge=1, le=MAX_ID)]  # the services say how many at most
# A float that is a real number: JSON has no inf or nan, and the response could not carry it.
Finite = Annotated[float, Field(allow_inf_nan=False)]


def _reject_null(cls: type[BaseModel], value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null (leave the field out to keep its value)")
    return value


def not_null(*fields: str) -> Any:
    """A validator for PATCH bodies: these fields may be left out but not set to null."""
    # Defaults are not validated, so only an explicit null reaches the check.
    return field_validator(*fields)(classmethod(_reject_null))


def _storable(cls: type[BaseModel], value: Any) -> Any:
    problem = json_problem(value)
    if problem is not None:
        where, reason = problem
        raise ValueError(f"{where}: {reason}" if where else reason)
    return value


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently lost.

    Every field, nested JSON included, refuses control characters (tab, newline and carriage
    return aside) and non-finite numbers: 422 naming the field, never stored altered.
    """

    model_config = ConfigDict(extra="forbid")

    _storable = field_validator("*", mode="after")(classmethod(_storable))


async def reject_control_characters(request: Request) -> None:
    """A router dependency: a query parameter with a control character is a 422 naming it."""
    for name, value in request.query_params.multi_items():
        char = find_control(name) or find_control(value)
        if char is not None:
            raise ValidationFailed(name, f"must not contain control characters ({char})")


class ListOut(BaseModel, Generic[T]):
    """Every list response: ``{"items": [...], "next_cursor": ...}``."""

    items: list[T]
    next_cursor: str | None = None
