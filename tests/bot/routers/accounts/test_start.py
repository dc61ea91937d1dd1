"""``/start``: an invite addressed to someone who already has an account, accepted in the bot."""

from __future__ import annotations

import pytest

from crm.models import Invite, User
from crm.services.access import Actor
from crm.services.accounts import invites
from crm.services.accounts.api_keys import do_create_api_key
from crm.services.accounts.invites import InviteInvalid
from tests.support.bot import buttons, click, message, onboard_owner, role_of, say, wait_for
from tests.support.service import RunningService

OLGA = 5501  # owner of the inviting workspace
GRACE = 5502  # owner of her own workspace, added through Olga's API key
MALLORY = 5503  # someone else trying to accept Grace's invite


async def _add_through_the_api(service: RunningService, tenant_id: int, owner: User) -> int:
    issued = await do_create_api_key(
        Actor.system(tenant_id), "sync", ["read", "write", "admin"], for_user_id=owner.id
    )
    added = await service.http.post(
        "/api/v1/members",
        json={"role": "bidi", "telegram_id": GRACE},
        headers={"Authorization": f"Bearer {issued.token}"},
    )
    assert added.status_code == 202, added.text
    return int(added.json()["invite_id"])


async def test_an_invited_user_joins_only_by_accepting_in_the_bot(
    service: RunningService,
) -> None:
    olga = await onboard_owner(service, OLGA, "Olga")
    await onboard_owner(service, GRACE, "Grace")
    await onboard_owner(service, MALLORY, "Mallory")
    workspace = olga.current_tenant_id
    assert workspace is not None
    invite_id = await _add_through_the_api(service, workspace, olga)
    assert await role_of(GRACE, workspace) is None  # not attached by the API

    await say(service, GRACE, "/start", first_name="Grace")
    offer = await wait_for(service, GRACE, "You are invited")
    assert "Olga's workspace" in offer["text"] and "member" in offer["text"]
    assert buttons(offer) == [f"iv:{invite_id}:1", f"iv:{invite_id}:0"]

    # Only Grace may answer it (the emulator refuses a forged button, so asked directly).
    mallory = await User.get(telegram_id=MALLORY)
    with pytest.raises(InviteInvalid):
        await invites.do_answer_invite(mallory, invite_id, accept=True)
    assert await role_of(MALLORY, workspace) is None

    await click(service, GRACE, f"iv:{invite_id}:1", offer["message_id"])
    assert await role_of(GRACE, workspace) == "bidi"
    joined = await message(service, GRACE, offer["message_id"])
    assert "You joined “Olga's workspace” as member" in joined["text"]
    grace = await User.get(telegram_id=GRACE)
    assert grace.current_tenant_id == workspace
    assert (await Invite.get(id=invite_id)).used_by_id == grace.id

    assert buttons(joined) == []  # answered: the buttons are gone, and the invite used up
    with pytest.raises(InviteInvalid):
        await invites.do_answer_invite(grace, invite_id, accept=True)


async def test_an_invited_user_may_decline(service: RunningService) -> None:
    olga = await onboard_owner(service, OLGA, "Olga")
    await onboard_owner(service, GRACE, "Grace")
    workspace = olga.current_tenant_id
    assert workspace is not None
    invite_id = await _add_through_the_api(service, workspace, olga)
    await say(service, GRACE, "/start", first_name="Grace")
    offer = await wait_for(service, GRACE, "You are invited")
    await click(service, GRACE, f"iv:{invite_id}:0", offer["message_id"])
    assert "declined" in (await message(service, GRACE, offer["message_id"]))["text"]
    assert await role_of(GRACE, workspace) is None
