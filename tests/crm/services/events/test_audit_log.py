"""Audit log service: admins only, tenant scoped, every write leaves one event."""

from __future__ import annotations

import pytest

from crm.errors import PermissionDenied
from crm.models import Event, OutboxEntry, Role
from crm.services.access import Actor, ActorType, Scope
from crm.services.contacts.companies import do_create_company, do_delete_company, do_update_company
from crm.services.events.audit_log import list_events
from tests.support.workspace import Workspace


async def test_admin_with_a_read_key_may_read(workspace: Workspace) -> None:
    read_key = Actor(
        tenant_id=workspace.tenant_id,
        user_id=workspace.owner_id,
        role=Role.ADMIN,
        actor_type=ActorType.API_KEY,
        scopes=frozenset({Scope.READ}),
    )
    assert (await list_events(read_key)).items
    bidi = Actor(tenant_id=workspace.tenant_id, user_id=workspace.owner_id, role=Role.BIDI)
    with pytest.raises(PermissionDenied):
        await list_events(bidi)


async def test_each_write_appends_one_event_with_its_outbox_entry(workspace: Workspace) -> None:
    actor = workspace.actor
    start = await Event.filter(tenant_id=workspace.tenant_id).count()
    company = await do_create_company(actor, "A")
    await do_update_company(actor, company.id, name="B")
    await do_update_company(actor, company.id, name="B")  # unchanged: no event
    await do_delete_company(actor, company.id)
    page = await list_events(actor, entity_type="company")
    assert [e.type for e in page.items] == ["company.deleted", "company.updated", "company.created"]
    assert await Event.filter(tenant_id=workspace.tenant_id).count() == start + 3
    ids = [e.id for e in page.items]
    assert await OutboxEntry.filter(event_id__in=ids).count() == 3
