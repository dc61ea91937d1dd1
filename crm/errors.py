"""Errors the services raise; the HTTP layer renders them as problem+json."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FieldError:
    """One invalid field and why."""

    field: str
    reason: str


class ServiceError(Exception):
    """Base of every error a service raises on purpose."""

    status = 400
    title = "Bad request"
    code: str | None = None  # a stable machine-readable name for cases clients branch on

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(ServiceError):
    """The record does not exist, or belongs to another tenant (indistinguishable on purpose)."""

    status = 404
    title = "Not found"

    def __init__(self, entity: str, entity_id: object) -> None:
        super().__init__(f"{entity} {entity_id} not found")


class Unauthenticated(ServiceError):
    """No valid credentials were presented."""

    status = 401
    title = "Unauthorized"


class PermissionDenied(ServiceError):
    """The actor is known but its role or scopes do not allow the action."""

    status = 403
    title = "Forbidden"


class ValidationFailed(ServiceError):
    """Input was well-formed but a field value is not acceptable."""

    status = 422
    title = "Validation failed"

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}", [FieldError(field_name, reason)])


class Conflict(ServiceError):
    """The write would break a uniqueness rule, e.g. a second contact with the same email."""

    status = 409
    title = "Conflict"

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}", [FieldError(field_name, reason)])
