"""Who is acting (the Actor) and what their role and scopes allow.

Role rules of the record services (companies, deals, notes, tags, pipelines, audit log):

- viewer reads only; bidi reads everything in the tenant, creates companies, deals, notes and
  tags, and changes or deletes only records it owns or that nobody owns; admin and owner do
  everything; pipelines and stages change only with ``require_admin``.
- A new company or deal is owned by its creator unless ``owner_id`` says otherwise, and a bidi
  may set ``owner_id`` only to itself or to nobody (403 naming ``owner_id``): handing a record
  to a colleague is an admin's call.
- Notes: a bidi writes notes on any record of the tenant; only the author or an admin/owner
  edits or deletes one (a note without an author: admins only).
- Tags: a bidi creates tags and tags or untags the contacts it may change; renaming or deleting
  a tag is for admins and owners, because it changes contacts of every member. This departs
  from "bidi may change unowned records" on purpose.
- The audit log (GET /events) is for admins and owners, with any key that may read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from crm.errors import PermissionDenied
from crm.models import ROLE_RANK, Role


class Scope(StrEnum):
    """What an API key may do, on top of its member's role."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


ALL_SCOPES = frozenset(Scope)


class ActorType(StrEnum):
    """The kind of actor recorded in the audit log."""

    USER = "user"
    API_KEY = "api_key"
    SYSTEM = "system"
    AGENT = "agent"


@dataclass(frozen=True)
class Actor:
    """A member acting in one tenant, possibly through an API key with limited scopes."""

    tenant_id: int
    user_id: int | None
    role: Role
    actor_type: ActorType = ActorType.USER
    api_key_id: int | None = None
    scopes: frozenset[Scope] = field(default_factory=lambda: ALL_SCOPES)

    @classmethod
    def system(cls, tenant_id: int) -> Actor:
        """The product itself acting in a tenant (imports from the CLI, background work)."""
        return cls(tenant_id=tenant_id, user_id=None, role=Role.OWNER, actor_type=ActorType.SYSTEM)

    def has_role(self, minimum: Role) -> bool:
        """True when the actor's role is at least ``minimum``."""
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]

    def require_read(self) -> None:
        """Every member may read; an API key needs the read scope."""
        if Scope.READ not in self.scopes and Scope.WRITE not in self.scopes:
            raise PermissionDenied("this API key lacks the 'read' scope")

    def require_write(self) -> None:
        """Writing needs the role bidi or above, and the write scope on an API key."""
        if Scope.WRITE not in self.scopes:
            raise PermissionDenied("this API key lacks the 'write' scope")
        if not self.has_role(Role.BIDI):
            raise PermissionDenied(f"the role '{self.role}' may not change records")

    def require_admin(self) -> None:
        """Settings (members, keys, pipelines) need admin or owner, and the admin scope."""
        if Scope.ADMIN not in self.scopes:
            raise PermissionDenied("this API key lacks the 'admin' scope")
        if not self.has_role(Role.ADMIN):
            raise PermissionDenied(f"the role '{self.role}' may not change workspace settings")

    def require_owner_or_admin_of(self, owner_id: int | None) -> None:
        """A bidi may change only records they own or that nobody owns; admins change any."""
        self.require_write()
        if self.has_role(Role.ADMIN):
            return
        if owner_id is not None and owner_id != self.user_id:
            raise PermissionDenied("a bidi may only change records they own or unowned ones")
