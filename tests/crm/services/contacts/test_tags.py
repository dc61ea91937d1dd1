"""Tag service rules: keys ignore case and spacing, untagging foreign tags is not found."""

from __future__ import annotations

import pytest

from crm.errors import NotFound
from crm.models import Contact, Tag
from crm.services.contacts.tags import do_tag_contact, do_untag_contact, tag_key
from tests.support.workspace import Workspace


def test_tag_key() -> None:
    assert tag_key(" VIP ") == "vip"


async def test_tagging_finds_or_creates_and_collapses_spaces(workspace: Workspace) -> None:
    contact = await Contact.create(tenant_id=workspace.tenant_id, name="A")
    views = await do_tag_contact(workspace.actor, contact.id, ["Big   Fish", "big fish", "new"])
    assert [v.tag.name for v in views] == ["Big Fish", "new"]
    assert await Tag.filter(tenant_id=workspace.tenant_id).count() == 2


async def test_untag_with_another_tenants_tag(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    contact = await Contact.create(tenant_id=workspace.tenant_id, name="A")
    other_contact = await Contact.create(tenant_id=other_workspace.tenant_id, name="B")
    (theirs,) = await do_tag_contact(other_workspace.actor, other_contact.id, ["x"])
    with pytest.raises(NotFound):
        await do_untag_contact(workspace.actor, contact.id, theirs.tag.id)
    with pytest.raises(NotFound):
        await do_untag_contact(workspace.actor, other_contact.id, theirs.tag.id)
    assert [t.name for t in await other_contact.tags.all()] == ["x"]
