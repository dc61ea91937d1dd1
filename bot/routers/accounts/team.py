"""``/invite [role]`` (owners and admins) and ``/team``: members, roles, role changes, removal.

Owners and admins get buttons under the member list: one to pick a member's new role, one to
remove them (after a confirmation). The rules are the services'
(``crm.services.accounts.workspaces``):
only an owner grants, changes or removes the owner role, and the last owner stays. Everyone
else sees the list only; an old button pressed by someone who may not use it is refused with
an alert and changes nothing. Buttons carry the workspace id, so they act where they were
shown even after ``/workspace`` switched. The member concerned is told in their language.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.callbacks import TeamList, TeamMember, TeamRemove, TeamRole
from bot.handling import ACTOR_FLAG, CURRENT_ACTOR, PRIVATE_CHATS, NeedsActor, feature_router
from bot.texts import role_name
from crm.errors import NotFound, PermissionDenied, ServiceError, ValidationFailed
from crm.models import Membership, Role, User
from crm.services.access import Actor
from crm.services.accounts import invites, operators
from crm.services.accounts import workspaces as tenants

logger = logging.getLogger(__name__)

ROLE_WORDS = {
    "admin": Role.ADMIN,
    "bidi": Role.BIDI,
    "member": Role.BIDI,
    "viewer": Role.VIEWER,
}
ROLE_ORDER = (Role.OWNER, Role.ADMIN, Role.BIDI, Role.VIEWER)
BUTTON_NAME = 24


async def invite(message: Message, command: CommandObject, actor: Actor, bot: Bot) -> None:
    """Answer a single-use deep link that joins the workspace with the chosen role."""
    word = (command.args or "bidi").strip().lower()
    role = ROLE_WORDS.get(word)
    if role is None:
        await message.answer(_("Usage: /invite admin, /invite member or /invite viewer."))
        return
    try:
        token = await invites.do_create_invite(actor, role)
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


# ---- the member list -------------------------------------------------------------------------


def _name(member: Membership) -> str:
    return member.user.name or str(member.user.id)


def _short(text: str) -> str:
    return text if len(text) <= BUTTON_NAME else text[: BUTTON_NAME - 1] + "…"


def _manageable(actor: Actor, member: Membership) -> bool:
    """Whether the list offers buttons for this member to this actor."""
    if member.user_id == actor.user_id or not actor.has_role(Role.ADMIN):
        return False
    return member.role is not Role.OWNER or actor.role is Role.OWNER


def team_text(members: list[Membership]) -> str:
    """The member list as plain text (no parse mode: names stay as written)."""
    lines = [_("{name}: {role}").format(name=_name(m), role=role_name(m.role)) for m in members]
    return _("Members of this workspace:") + "\n" + "\n".join(lines)


def team_keyboard(actor: Actor, members: list[Membership]) -> InlineKeyboardMarkup | None:
    """For owners and admins: change role and remove, one row per member they may manage."""
    rows = [
        [
            InlineKeyboardButton(
                text=_("✏️ {name}: {role}").format(name=_short(_name(m)), role=role_name(m.role)),
                callback_data=TeamMember(ws=actor.tenant_id, uid=m.user_id).pack(),
            ),
            InlineKeyboardButton(
                text=_("🗑 Remove"),
                callback_data=TeamRemove(ws=actor.tenant_id, uid=m.user_id).pack(),
            ),
        ]
        for m in members
        if _manageable(actor, m)
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


async def team(message: Message, actor: Actor) -> None:
    """List the members of the current workspace and their roles (with buttons for admins)."""
    members = await tenants.list_members(actor)
    await message.answer(team_text(members), reply_markup=team_keyboard(actor, members))


# ---- buttons ---------------------------------------------------------------------------------


def team_refusal(exc: ServiceError, actor: Actor | None) -> str:
    """Why a member change was refused, in the operator's language."""
    if isinstance(exc, NotFound):
        return _("This person is no longer a member of the workspace.")
    if isinstance(exc, PermissionDenied):
        if actor is None or not actor.has_role(Role.ADMIN):
            return _("Only owners and admins can change roles or remove members.")
        return _("Only an owner can give, change or take away the owner role.")
    if isinstance(exc, ValidationFailed):
        return _("A workspace needs an owner: make someone else an owner first.")
    return _("That did not work: {reason}").format(reason=exc.detail)


def _not_member() -> str:
    return _("You are not a member of that workspace.")


async def _button_actor(data: dict[str, Any]) -> Actor | None:
    """The presser acting in the workspace the button names (not necessarily the current one)."""
    user: User | None = data.get("user")
    return await operators.actor_for(user, data["callback_data"].ws) if user is not None else None


BUTTON_ACTOR = {ACTOR_FLAG: NeedsActor(missing=_not_member, resolve=_button_actor)}


def _require_admin(actor: Actor) -> None:
    """Members are managed by owners and admins only."""
    if not actor.has_role(Role.ADMIN):
        raise PermissionDenied("members are managed by admins")


async def _show_list(query: CallbackQuery, actor: Actor) -> None:
    """Put the refreshed member list back in the pressed message."""
    if not isinstance(query.message, Message):
        return
    members = await tenants.list_members(actor)
    await query.message.edit_text(team_text(members), reply_markup=team_keyboard(actor, members))


def member_news(workspace: str, role: Role | None) -> str:
    """What the member concerned is told: their new role, or their removal (``None``)."""
    if role is None:
        return _("You were removed from the workspace “{workspace}”.").format(workspace=workspace)
    return _("Your role in the workspace “{workspace}” is now: {role}.").format(
        workspace=workspace, role=role_name(role)
    )


async def _tell_member(bot: Bot, i18n: I18n, member: User, actor: Actor, role: Role | None) -> None:
    """Tell the member concerned, in their language; a chat that refuses is let go."""
    if member.telegram_id is None or member.id == actor.user_id:
        return
    workspace = (await tenants.access_tenant(actor)).name
    with i18n.use_locale(operators.language_of(member.language)):
        text = member_news(workspace, role)
    try:
        await bot.send_message(chat_id=member.telegram_id, text=text)
    except (TelegramForbiddenError, TelegramBadRequest) as exc:
        logger.info("member %s not told of the change: %s", member.id, exc)


async def pick_role(query: CallbackQuery, callback_data: TeamMember, actor: Actor) -> None:
    """Offer the roles this member may get from the presser."""
    _require_admin(actor)
    member = await tenants.access_membership(actor, callback_data.uid)
    if member.role is Role.OWNER and actor.role is not Role.OWNER:
        raise PermissionDenied("owner")
    roles = [
        r
        for r in ROLE_ORDER
        if r is not member.role and (r is not Role.OWNER or actor.role is Role.OWNER)
    ]
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=role_name(r),
                    callback_data=TeamRole(ws=actor.tenant_id, uid=member.user_id, role=r).pack(),
                )
                for r in roles
            ],
            [
                InlineKeyboardButton(
                    text=_("🗑 Remove"),
                    callback_data=TeamRemove(ws=actor.tenant_id, uid=member.user_id).pack(),
                ),
                InlineKeyboardButton(
                    text=_("« Back"), callback_data=TeamList(ws=actor.tenant_id).pack()
                ),
            ],
        ]
    )
    if isinstance(query.message, Message):
        await query.message.edit_text(
            _("The role of {name} is {role}. Choose the new role:").format(
                name=_name(member), role=role_name(member.role)
            ),
            reply_markup=keyboard,
        )


async def set_role(
    query: CallbackQuery,
    callback_data: TeamRole,
    actor: Actor,
    bot: Bot,
    i18n: I18n,
    callback_answer: CallbackAnswer,
) -> None:
    """Change the member's role, refresh the list, tell the member."""
    _require_admin(actor)
    try:
        role = Role(callback_data.role)
    except ValueError:
        callback_answer.text, callback_answer.show_alert = _("Unknown role."), True
        return
    member = await tenants.do_change_member_role(actor, callback_data.uid, role)
    callback_answer.text = _("{name} is now {role}.").format(
        name=_name(member), role=role_name(role)
    )
    await _show_list(query, actor)
    await _tell_member(bot, i18n, member.user, actor, role)


async def remove(
    query: CallbackQuery,
    callback_data: TeamRemove,
    actor: Actor,
    bot: Bot,
    i18n: I18n,
    callback_answer: CallbackAnswer,
) -> None:
    """Ask to confirm the removal; once confirmed, remove, refresh the list, tell the member."""
    _require_admin(actor)
    member = await tenants.access_membership(actor, callback_data.uid)
    if not callback_data.ok:
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=_("✅ Yes, remove"),
                        callback_data=TeamRemove(
                            ws=actor.tenant_id, uid=member.user_id, ok=1
                        ).pack(),
                    ),
                    InlineKeyboardButton(
                        text=_("Cancel"), callback_data=TeamList(ws=actor.tenant_id).pack()
                    ),
                ]
            ]
        )
        if isinstance(query.message, Message):
            await query.message.edit_text(
                _(
                    "Remove {name} ({role}) from the workspace? They lose access to its "
                    "leads, conversations and deals at once."
                ).format(name=_name(member), role=role_name(member.role)),
                reply_markup=keyboard,
            )
        return
    await tenants.do_remove_member(actor, member.user_id)
    callback_answer.text = _("{name} was removed from the workspace.").format(name=_name(member))
    await _show_list(query, actor)
    await _tell_member(bot, i18n, member.user, actor, None)


async def back_to_list(query: CallbackQuery, actor: Actor) -> None:
    """Show the member list again (Back, Cancel)."""
    await _show_list(query, actor)


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("team", team_refusal, chats=PRIVATE_CHATS)
    router.message.register(invite, Command("invite"), flags=CURRENT_ACTOR)
    router.message.register(team, Command("team"), flags=CURRENT_ACTOR)
    router.callback_query.register(pick_role, TeamMember.filter(), flags=BUTTON_ACTOR)
    router.callback_query.register(set_role, TeamRole.filter(), flags=BUTTON_ACTOR)
    router.callback_query.register(remove, TeamRemove.filter(), flags=BUTTON_ACTOR)
    router.callback_query.register(back_to_list, TeamList.filter(), flags=BUTTON_ACTOR)
    return router
