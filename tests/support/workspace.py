"""A workspace (tenant, owner, all-scopes API key) to make requests and service calls as."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from crm.models import Role
from crm.services.access import Actor
from crm.services.accounts.api_keys import do_create_api_key
from crm.services.accounts.workspaces import do_add_member, do_create_tenant


@dataclass
class Workspace:
    """A tenant with an owner and an API key ready for requests."""

    tenant_id: int
    owner_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def actor(self) -> Actor:
        return Actor(tenant_id=self.tenant_id, user_id=self.owner_id, role=Role.OWNER)

    async def member(
        self, role: Role, telegram_id: int | None = None
    ) -> tuple[int, dict[str, str]]:
        """Add a member with ``role`` and return their user id and request headers."""
        tg = telegram_id if telegram_id is not None else uuid.uuid4().int % 10**9
        membership = await do_add_member(self.actor, role, telegram_id=tg)
        scopes = ["read", "write", "admin"] if role in (Role.OWNER, Role.ADMIN) else None
        issued = await do_create_api_key(
            Actor.system(self.tenant_id), "test", scopes, for_user_id=membership.user_id
        )
        return membership.user_id, {"Authorization": f"Bearer {issued.token}"}


async def make_workspace(name: str = "Acme") -> Workspace:
    """Create a tenant with an owner holding an all-scopes key."""
    created = await do_create_tenant(name, owner_telegram_id=uuid.uuid4().int % 10**9)
    actor = Actor(tenant_id=created.tenant.id, user_id=created.owner.id, role=Role.OWNER)
    issued = await do_create_api_key(actor, "owner", ["read", "write", "admin"])
    return Workspace(created.tenant.id, created.owner.id, issued.token)
