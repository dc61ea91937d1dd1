"""What every record service checks about references: ids in the tenant, assignable owners."""

from __future__ import annotations

import enum
from typing import TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from crm.errors import FieldError, NotFound, PermissionDenied, ValidationFailed
from crm.models import Membership
from crm.services.access import Actor

M = TypeVar("M", bound=Model)


class Unset(enum.Enum):
    """Marks an update argument that was not given (``None`` means "set to null")."""

    UNSET = "unset"


UNSET = Unset.UNSET


async def require_in_tenant(
    actor: Actor,
    model: type[Model],
    record_id: int,
    field: str,
    using_db: BaseDBAsyncClient | None = None,
) -> None:
    """A referenced id must exist in the actor's tenant, else 422 naming ``field``.

    The reason is the same for missing ids and ids of another tenant, so nothing leaks.
    """
    exists = await model.filter(id=record_id, tenant_id=actor.tenant_id).using_db(using_db).exists()
    if not exists:
        raise ValidationFailed(field, f"{record_id} does not exist in this organization")


async def check_owner_assignable(
    actor: Actor, owner_id: int | None, using_db: BaseDBAsyncClient | None = None
) -> None:
    """An owner must be a member; a bidi may assign only themselves or nobody."""
    if owner_id is None:
        return
    exists = (
        await Membership.filter(tenant_id=actor.tenant_id, user_id=owner_id)
        .using_db(using_db)
        .exists()
    )
    if not exists:
        raise ValidationFailed("owner_id", f"{owner_id} is not a member of this organization")
    try:
        actor.require_owner_or_admin_of(owner_id)
    except PermissionDenied as exc:
        raise PermissionDenied(
            "a bidi may assign records only to themselves or to nobody",
            [FieldError("owner_id", exc.detail)],
        ) from None


def default_owner(actor: Actor, owner_id: int | Unset | None) -> int | None:
    """The owner of a new record: the one given, else the acting member."""
    return actor.user_id if owner_id is UNSET else owner_id


async def get_in_tenant(actor: Actor, model: type[M], record_id: int, entity: str) -> M:
    """A record of the actor's tenant that the actor may read; NotFound for missing or foreign."""
    actor.require_read()
    record = await model.get_or_none(id=record_id, tenant_id=actor.tenant_id)
    if record is None:
        raise NotFound(entity, record_id)
    return record


async def lock_in_tenant(
    actor: Actor, model: type[M], record_id: int, entity: str, conn: BaseDBAsyncClient
) -> M:
    """Fetch a record of the actor's tenant FOR UPDATE; NotFound for missing or foreign ids."""
    record = (
        await model.filter(id=record_id, tenant_id=actor.tenant_id)
        .using_db(conn)
        .select_for_update()
        .first()
    )
    if record is None:
        raise NotFound(entity, record_id)
    return record
