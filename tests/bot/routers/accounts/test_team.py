"""``/team`` through the emulator: the list, role changes, removal with a confirmation, refusals."""

from __future__ import annotations

from typing import Any

from crm.models import Membership, User
from tests.support.bot import (
    buttons,
    click,
    invite_link,
    join,
    message,
    onboard_owner,
    role_of,
    say,
    sent,
    wait_for,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OLGA = 5401  # owner
ADA = 5402  # admin
BORIS = 5403  # member
VICTOR = 5404  # viewer


async def team_list(service: RunningService, user_id: int) -> dict[str, Any]:
    """``/team`` and its answer."""
    before = len(await sent(service, user_id))
    await say(service, user_id, "/team")

    async def answered() -> bool:
        return len(await sent(service, user_id)) > before

    await eventually(answered)
    return (await sent(service, user_id))[-1]


async def team_of_four(service: RunningService) -> tuple[int, dict[str, int]]:
    """Olga's workspace with an admin, a member and a viewer; returns it and the user ids."""
    olga = await onboard_owner(service, OLGA, "Olga")
    await join(service, ADA, "Ada", await invite_link(service, OLGA, "admin"))
    await join(service, BORIS, "Boris", await invite_link(service, OLGA, "member"))
    await join(service, VICTOR, "Victor", await invite_link(service, OLGA, "viewer"))
    ids = {
        name: (await User.get(telegram_id=tg)).id
        for name, tg in (("olga", OLGA), ("ada", ADA), ("boris", BORIS), ("victor", VICTOR))
    }
    return olga.current_tenant_id or 0, ids


async def test_owners_change_roles_and_the_member_is_told(service: RunningService) -> None:
    ws, ids = await team_of_four(service)
    listing = await team_list(service, OLGA)
    assert listing["text"] == (
        "Members of this workspace:\nOlga: owner\nAda: admin\nBoris: member\nVictor: viewer"
    )
    # Buttons for everyone but herself: change the role, remove.
    assert buttons(listing) == [
        f"tm:{ws}:{ids['ada']}",
        f"tx:{ws}:{ids['ada']}:0",
        f"tm:{ws}:{ids['boris']}",
        f"tx:{ws}:{ids['boris']}:0",
        f"tm:{ws}:{ids['victor']}",
        f"tx:{ws}:{ids['victor']}:0",
    ]
    rows = listing["reply_markup"]["inline_keyboard"]
    assert [b["text"] for b in rows[1]] == ["✏️ Boris: member", "🗑 Remove"]

    # Boris speaks Russian: he will be told in Russian.
    await say(service, BORIS, "/lang")
    offer = await wait_for(service, BORIS, "Choose the language")
    await click(service, BORIS, "lang:ru", offer["message_id"])

    await click(service, OLGA, f"tm:{ws}:{ids['boris']}", listing["message_id"])
    picker = await message(service, OLGA, listing["message_id"])
    assert picker["text"] == "The role of Boris is member. Choose the new role:"
    assert buttons(picker) == [
        f"tr:{ws}:{ids['boris']}:owner",
        f"tr:{ws}:{ids['boris']}:admin",
        f"tr:{ws}:{ids['boris']}:viewer",
        f"tx:{ws}:{ids['boris']}:0",
        f"tz:{ws}",
    ]

    done = await click(service, OLGA, f"tr:{ws}:{ids['boris']}:admin", listing["message_id"])
    assert done["text"] == "Boris is now admin." and not done["show_alert"]
    assert await role_of(BORIS, ws) == "admin"
    told = await wait_for(service, BORIS, "Ваша роль")
    assert (
        told["text"] == "Ваша роль в рабочем пространстве «Olga's workspace» теперь: администратор."
    )
    refreshed = await message(service, OLGA, listing["message_id"])
    assert "Boris: admin" in refreshed["text"]
    assert f"tm:{ws}:{ids['boris']}" in buttons(refreshed)


async def test_removal_asks_first_and_tells_the_member(service: RunningService) -> None:
    ws, ids = await team_of_four(service)
    listing = await team_list(service, OLGA)

    await click(service, OLGA, f"tx:{ws}:{ids['victor']}:0", listing["message_id"])
    question = await message(service, OLGA, listing["message_id"])
    assert question["text"] == (
        "Remove Victor (viewer) from the workspace? They lose access to its leads, "
        "conversations and deals at once."
    )
    assert buttons(question) == [f"tx:{ws}:{ids['victor']}:1", f"tz:{ws}"]
    assert await role_of(VICTOR, ws) == "viewer", "asking removed nobody"

    # Cancel goes back to the list; nothing changed.
    await click(service, OLGA, f"tz:{ws}", listing["message_id"])
    back = await message(service, OLGA, listing["message_id"])
    assert back["text"].endswith("Victor: viewer")

    await click(service, OLGA, f"tx:{ws}:{ids['victor']}:0", listing["message_id"])
    done = await click(service, OLGA, f"tx:{ws}:{ids['victor']}:1", listing["message_id"])
    assert done["text"] == "Victor was removed from the workspace."
    assert await role_of(VICTOR, ws) is None
    await wait_for(service, VICTOR, "You were removed from the workspace “Olga's workspace”.")
    after = await message(service, OLGA, listing["message_id"])
    assert "Victor" not in after["text"]
    assert f"tx:{ws}:{ids['victor']}:0" not in buttons(after)


async def test_others_see_the_list_only_and_old_buttons_are_refused(
    service: RunningService,
) -> None:
    ws, ids = await team_of_four(service)

    for viewer_or_member in (VICTOR, BORIS):
        listing = await team_list(service, viewer_or_member)
        assert listing["text"].startswith("Members of this workspace:\nOlga: owner")
        assert listing["reply_markup"] is None

    # An admin sees buttons for everyone but the owner (owner changes are an owner's call).
    ada_list = await team_list(service, ADA)
    assert buttons(ada_list) == [
        f"tm:{ws}:{ids['boris']}",
        f"tx:{ws}:{ids['boris']}:0",
        f"tm:{ws}:{ids['victor']}",
        f"tx:{ws}:{ids['victor']}:0",
    ]
    await click(service, ADA, f"tm:{ws}:{ids['boris']}", ada_list["message_id"])
    picker = await message(service, ADA, ada_list["message_id"])
    assert f"tr:{ws}:{ids['boris']}:owner" not in buttons(picker)
    await click(service, ADA, f"tz:{ws}", ada_list["message_id"])

    # Olga makes Boris an owner; Ada's list still has the buttons she saw before.
    olga_list = await team_list(service, OLGA)
    await click(service, OLGA, f"tm:{ws}:{ids['boris']}", olga_list["message_id"])
    await click(service, OLGA, f"tr:{ws}:{ids['boris']}:owner", olga_list["message_id"])
    assert await role_of(BORIS, ws) == "owner"

    await click(service, ADA, f"tx:{ws}:{ids['boris']}:0", ada_list["message_id"])
    refused = await click(service, ADA, f"tx:{ws}:{ids['boris']}:1", ada_list["message_id"])
    assert refused["show_alert"]
    assert refused["text"] == "Only an owner can give, change or take away the owner role."
    assert await role_of(BORIS, ws) == "owner"

    # Ada opens the list as an admin; then Olga makes her a viewer. Her old buttons are
    # refused, in her language, and change nothing.
    ada_old = await team_list(service, ADA)
    assert f"tx:{ws}:{ids['victor']}:0" in buttons(ada_old)
    await click(service, OLGA, f"tm:{ws}:{ids['ada']}", olga_list["message_id"])
    await click(service, OLGA, f"tr:{ws}:{ids['ada']}:viewer", olga_list["message_id"])
    assert await role_of(ADA, ws) == "viewer"
    await User.filter(telegram_id=ADA).update(language="ru")
    for data in (f"tm:{ws}:{ids['victor']}", f"tx:{ws}:{ids['victor']}:0"):
        refused = await click(service, ADA, data, ada_old["message_id"])
        assert refused["show_alert"]
        assert refused["text"] == (
            "Менять роли и удалять участников могут только владельцы и администраторы."
        )
    assert await role_of(VICTOR, ws) == "viewer"
    assert await Membership.filter(tenant_id=ws).count() == 4
    assert (await team_list(service, ADA))["reply_markup"] is None
