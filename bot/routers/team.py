"""``/invite [role]`` (owners and admins) and ``/team`` (members and roles)."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.texts import no_workspace, role_name
from crm.models import Role
from crm.services import operators, tenants
from crm.services.access import Actor
from crm.services.errors import PermissionDenied, ValidationFailed

ROLE_WORDS = {
    "admin": Role.ADMIN,
    "bidi": Role.BIDI,
    "member": Role.BIDI,
    "viewer": Role.VIEWER,
}


async def invite(message: Message, command: CommandObject, actor: Actor | None, bot: Bot) -> None:
    """Answer a single-use deep link that joins the workspace with the chosen role."""
    if actor is None:
        await message.answer(no_workspace())
        return
    word = (command.args or "bidi").strip().lower()
    role = ROLE_WORDS.get(word)
    if role is None:
        await message.answer(_("Usage: /invite admin, /invite member or /invite viewer."))
        return
    try:
        token = await operators.do_create_invite(actor, role)
    except PermissionDenied:
        await message.answer(_("Only owners and admins can invite colleagues."))
        return
    except ValidationFailed:
        await message.answer(_("Only an owner can invite an admin."))
        return
    me = await bot.me()
    link = f"https://t.me/{me.username}?start={invite_start(token)}"
    await message.answer(
        _(
            "Send this link to your colleague. It joins them as {role}, works once and "
            "expires in 7 days:\n{link}"
        ).format(role=role_name(role), link=link)
    )


def invite_start(token: str) -> str:
    """The /start parameter of an invite link."""
    return f"inv_{token}"


async def team(message: Message, actor: Actor | None) -> None:
    """List the members of the current workspace and their roles."""
    if actor is None:
        await message.answer(no_workspace())
        return
    members = await tenants.list_members(actor)
    lines = [
        _("{name}: {role}").format(name=m.user.name or m.user.id, role=role_name(m.role))
        for m in members
    ]
    await message.answer(_("Members of this workspace:") + "\n" + "\n".join(lines))


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = Router(name="team")
    router.message.register(invite, Command("invite"))
    router.message.register(team, Command("team"))
    return router
