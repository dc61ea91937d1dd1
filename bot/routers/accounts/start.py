"""``/start`` (a new workspace or an invite link) and ``/workspace`` (switch workspaces)."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import InviteAnswer, WorkspacePick
from bot.dependencies import BotServices
from bot.handling import PRIVATE_CHATS, feature_router
from bot.keyboards import workspaces_keyboard
from bot.texts import no_workspace, role_name
from crm.errors import NotFound
from crm.models import Role, User
from crm.services.accounts import invites, operators
from crm.services.accounts.invites import InviteInvalid

INVITE_PREFIX = "inv_"


def _invite_error(exc: InviteInvalid) -> str:
    messages = {
        "invite_used": _("This invite link was already used. Ask for a new one."),
        "invite_expired": _("This invite link has expired. Ask for a new one."),
        "already_member": _("You are already a member of this workspace."),
    }
    return messages.get(exc.code or "", _("This invite link is not valid."))


async def start_with_invite(message: Message, command: CommandObject) -> None:
    """Join the workspace of an invite link."""
    sender = message.from_user
    if sender is None or command.args is None:
        return
    token = command.args.removeprefix(INVITE_PREFIX)
    try:
        membership = await invites.do_accept_invite(
            token, sender.id, sender.full_name, sender.language_code
        )
    except InviteInvalid as exc:
        await message.answer(_invite_error(exc))
        return
    await membership.fetch_related("tenant")
    await message.answer(_joined(membership.tenant.name, membership.role))


def _joined(workspace: str, role: Role | str) -> str:
    return _(
        "Welcome! You joined “{workspace}” as {role}. Send /help to see what I can do."
    ).format(workspace=workspace, role=role_name(role))


async def offer_invites(message: Message, user: User) -> None:
    """Show each open invite addressed to the user (an admin added them) with Join / Decline."""
    for invite in await invites.pending_invites_of(user):
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=_("✅ Join"), callback_data=InviteAnswer(id=invite.id, ok=1).pack()
                    ),
                    InlineKeyboardButton(
                        text=_("Decline"), callback_data=InviteAnswer(id=invite.id, ok=0).pack()
                    ),
                ]
            ]
        )
        await message.answer(
            _("You are invited to join the workspace “{workspace}” as {role}.").format(
                workspace=invite.tenant.name, role=role_name(invite.role)
            ),
            reply_markup=keyboard,
        )


async def answer_invite(
    query: CallbackQuery,
    callback_data: InviteAnswer,
    user: User | None,
    callback_answer: CallbackAnswer,
) -> None:
    """Join or decline the pressed invite; only the person it is addressed to may."""
    if user is None:
        callback_answer.text = _("This invite link is not valid.")
        callback_answer.show_alert = True
        return
    try:
        membership = await invites.do_answer_invite(user, callback_data.id, callback_data.ok == 1)
    except InviteInvalid as exc:
        callback_answer.text, callback_answer.show_alert = _invite_error(exc), True
        return
    if not isinstance(query.message, Message):
        return
    if membership is None:
        await query.message.edit_text(_("You declined the invite."))
        return
    await membership.fetch_related("tenant")
    await query.message.edit_text(_joined(membership.tenant.name, membership.role))


async def start(message: Message, services: BotServices) -> None:
    """Register the operator; a newcomer gets their own workspace and owns it."""
    sender = message.from_user
    if sender is None:
        return
    user, tenant = await operators.do_register_operator(
        sender.id, sender.full_name, sender.language_code
    )
    if tenant is not None:
        actor = await operators.actor_for(user, tenant.id)
        role = role_name(actor.role) if actor is not None else ""
        text = _("Hello again, {name}! You are working in “{workspace}” as {role}.").format(
            name=sender.first_name, workspace=tenant.name, role=role
        )
        # A sign-in link works once and expires: /start is how to get a fresh one.
        await message.answer(text + await _sandbox_note(services, tenant.id, user.id))
        await offer_invites(message, user)
        return
    name = _("{name}'s workspace").format(name=sender.first_name)
    tenant = await operators.do_create_workspace_for(user, name, services.on_workspace_created)
    text = _(
        "Welcome, {name}! I created the workspace “{workspace}” and you are its owner. "
        "I will notify you here of every lead message; reply to a notification to answer."
    ).format(name=sender.first_name, workspace=tenant.name)
    text += await _sandbox_note(services, tenant.id, user.id)
    await message.answer(text + "\n\n" + _("Send /help to see what I can do."))
    await offer_invites(message, user)


async def _sandbox_note(services: BotServices, tenant_id: int, user_id: int) -> str:
    """In sandbox mode, the page's address: a single-use sign-in link, never an API key."""
    if not services.sandbox_url:
        return ""
    url = services.sandbox_url
    if services.sandbox_link is not None:
        url = await services.sandbox_link(tenant_id, user_id)
    return "\n\n" + _(
        "This is the sandbox: open {url} to write to yourself as a lead on WhatsApp or Telegram."
    ).format(url=url)


async def workspace(message: Message, user: User | None) -> None:
    """List the operator's workspaces as buttons."""
    if user is None:
        await message.answer(no_workspace())
        return
    workspaces = await operators.workspaces_of(user)
    if not workspaces:
        await message.answer(no_workspace())
        return
    current = await operators.current_workspace(user)
    await message.answer(
        _("Your workspaces: pick the one to work in."),
        reply_markup=workspaces_keyboard(workspaces, current.id if current else None),
    )


async def pick_workspace(
    query: CallbackQuery,
    callback_data: WorkspacePick,
    user: User | None,
    callback_answer: CallbackAnswer,
) -> None:
    """Switch to the pressed workspace."""
    if user is None:
        callback_answer.text, callback_answer.show_alert = no_workspace(), True
        return
    try:
        tenant = await operators.do_switch_workspace(user, callback_data.id)
    except NotFound:
        callback_answer.text = _("You are not a member of that workspace.")
        callback_answer.show_alert = True
        return
    callback_answer.text = _("Now working in “{workspace}”.").format(workspace=tenant.name)
    if query.message is not None and hasattr(query.message, "edit_reply_markup"):
        workspaces = await operators.workspaces_of(user)
        await query.message.edit_reply_markup(
            reply_markup=workspaces_keyboard(workspaces, tenant.id)
        )


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("start", chats=PRIVATE_CHATS)
    router.message.register(
        start_with_invite, CommandStart(deep_link=True, magic=F.args.startswith(INVITE_PREFIX))
    )
    router.message.register(start, CommandStart())
    router.message.register(workspace, Command("workspace"))
    router.callback_query.register(pick_workspace, WorkspacePick.filter())
    router.callback_query.register(answer_invite, InviteAnswer.filter())
    return router
