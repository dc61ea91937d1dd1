"""Company service rules and the shared sorted keyset pagination."""

from __future__ import annotations

import pytest

from crm.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from crm.infrastructure.pagination import encode_cursor, paginate_sorted
from crm.models import Company, Deal, Role
from crm.services.access import Actor
from crm.services.contacts.companies import (
    access_company,
    do_create_company,
    do_update_company,
    list_companies,
    name_key,
)
from crm.services.pipeline.deals import DEAL_SORTS, do_create_deal
from crm.services.references import UNSET
from tests.support.workspace import Workspace


def test_name_key_ignores_case_and_outer_space() -> None:
    assert name_key("  ACME Corp ") == "acme corp"


async def test_unset_keeps_and_none_clears(workspace: Workspace) -> None:
    actor = workspace.actor
    company = await do_create_company(actor, "Acme", domain="acme.io")
    same = await do_update_company(actor, company.id, name="Acme")
    assert same.domain == "acme.io"  # no change, and no event for it
    cleared = await do_update_company(actor, company.id, domain=None, owner_id=UNSET)
    assert cleared.domain is None and cleared.owner_id == workspace.owner_id


async def test_system_actor_creates_unowned_records(workspace: Workspace) -> None:
    system = Actor.system(workspace.tenant_id)
    company = await do_create_company(system, "Made by import")
    assert company.owner_id is None
    deal = await do_create_deal(system, "Made by a task")
    assert deal.owner_id is None


async def test_other_tenant_ids_are_not_found(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    company = await do_create_company(workspace.actor, "Mine")
    with pytest.raises(NotFound) as missing:
        await access_company(other_workspace.actor, 987654)
    with pytest.raises(NotFound) as foreign:
        await access_company(other_workspace.actor, company.id)
    assert str(foreign.value).replace(str(company.id), "N") == str(missing.value).replace(
        "987654", "N"
    )
    with pytest.raises(NotFound):
        await do_update_company(other_workspace.actor, company.id, name="Stolen")
    assert (await Company.get(id=company.id)).name == "Mine"


async def test_duplicate_name_raises_conflict(workspace: Workspace) -> None:
    await do_create_company(workspace.actor, "Acme")
    with pytest.raises(Conflict):
        await do_create_company(workspace.actor, "ACME")
    assert await Company.filter(tenant_id=workspace.tenant_id).count() == 1


async def test_viewer_and_read_only_key_cannot_write(workspace: Workspace) -> None:
    viewer = Actor(tenant_id=workspace.tenant_id, user_id=workspace.owner_id, role=Role.VIEWER)
    with pytest.raises(PermissionDenied):
        await do_create_company(viewer, "Nope")
    assert (await list_companies(viewer)).items == []


async def test_tampered_cursors_are_422(workspace: Workspace) -> None:
    await do_create_deal(workspace.actor, "a", value="1")
    query = Deal.filter(tenant_id=workspace.tenant_id)
    for cursor in (
        "not-base64!",
        encode_cursor(["value", "1.00"]),  # wrong length
        encode_cursor(["-value", "1.00", 1]),  # another sort's cursor
        encode_cursor(["value", "one", 1]),  # not a number
        encode_cursor(["value", "1.00", "1"]),  # id not an int
        encode_cursor(["created_at", "yesterday", 1]),
    ):
        sort = "created_at" if "created_at" in str(cursor) else "value"
        with pytest.raises(ValidationFailed) as exc:
            await paginate_sorted(query, sort, DEAL_SORTS, cursor, 10)
        assert exc.value.errors[0].field == "cursor"


async def test_keyset_pages_are_stable_under_inserts(workspace: Workspace) -> None:
    for value in ("5", "1", "3"):
        await do_create_deal(workspace.actor, value, value=value)
    query = Deal.filter(tenant_id=workspace.tenant_id)
    first = await paginate_sorted(query, "value", DEAL_SORTS, None, 2)
    assert [d.title for d in first.items] == ["1", "3"]
    # a row inserted before the cursor does not shift the next page
    await do_create_deal(workspace.actor, "0", value="0")
    second = await paginate_sorted(query, "value", DEAL_SORTS, first.next_cursor, 2)
    assert [d.title for d in second.items] == ["5"] and second.next_cursor is None
