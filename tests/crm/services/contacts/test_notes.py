"""Note service rules: authorship and who may change a note."""

from __future__ import annotations

import pytest

from crm.errors import PermissionDenied
from crm.models import Note, Role
from crm.services.access import Actor
from crm.services.contacts.notes import do_create_note, do_delete_note, do_update_note
from crm.services.pipeline.deals import do_create_deal
from tests.support.workspace import Workspace


async def test_a_note_without_author_is_for_admins(workspace: Workspace) -> None:
    deal = await do_create_deal(workspace.actor, "d")
    system_note = await do_create_note(Actor.system(workspace.tenant_id), "auto", deal_id=deal.id)
    assert system_note.author_id is None
    bidi_id, _ = await workspace.member(Role.BIDI)
    bidi = Actor(tenant_id=workspace.tenant_id, user_id=bidi_id, role=Role.BIDI)
    with pytest.raises(PermissionDenied):
        await do_update_note(bidi, system_note.id, "mine now")
    admin = Actor(tenant_id=workspace.tenant_id, user_id=workspace.owner_id, role=Role.ADMIN)
    assert (await do_update_note(admin, system_note.id, "fixed")).body == "fixed"
    await do_delete_note(admin, system_note.id)
    assert not await Note.exists(id=system_note.id)
