"""Inline keyboards of the operator bot."""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ConvAct, ConvAction, DraftAct, DraftAction, WorkspacePick
from crm.models import ROLE_RANK, Role, Tenant


def notification_keyboard(
    conversation_id: int,
    *,
    closed: bool = False,
    role: Role | None = None,
    mine: bool = False,
    taken: bool = False,
    state: str | None = None,
) -> InlineKeyboardMarkup:
    """The buttons of a lead notification, for what its reader may do in its current state.

    ``role`` None (a team inbox topic, read by several members): every button. A viewer gets
    Deal only. A bidi on a conversation ``taken`` by a colleague gets Deal and Stage. Open:
    Assign to me (unless ``mine``), Snooze 1h, Close; closed: Reopen. ``state`` (who has it,
    snoozed until when, closed) is shown as a first row.
    """
    try:
        locale: str | None = get_i18n().current_locale
    except LookupError:  # no i18n context: the source (English) texts
        locale = None
    return _notification_keyboard(conversation_id, closed, role, mine, taken, state, locale)


# Built once per conversation, state, role and language: every lead message sends one per
# recipient, and building its buttons (pydantic models, gettext) cost about a tenth of a worker's
# time at 100 notifications a second (bench_notify). Callers never modify a markup.
@functools.lru_cache(maxsize=4096)
def _notification_keyboard(
    conversation_id: int,
    closed: bool,
    role: Role | None,
    mine: bool,
    taken: bool,
    state: str | None,
    locale: str | None,
) -> InlineKeyboardMarkup:
    def button(text: str, act: ConvAct) -> InlineKeyboardButton:
        data = ConvAction(act=act, id=conversation_id).pack()
        return InlineKeyboardButton(text=text, callback_data=data)

    rank = ROLE_RANK[role] if role is not None else ROLE_RANK[Role.OWNER]
    writes = rank >= ROLE_RANK[Role.BIDI]
    # A bidi works only on conversations assigned to them or to nobody (check_may_work_on).
    works = writes and (rank >= ROLE_RANK[Role.ADMIN] or not taken)
    rows: list[list[InlineKeyboardButton]] = []
    if state:
        rows.append([button(state[:64], ConvAct.STATE)])
    if works:
        rows.append([button(_("↩️ Reply"), ConvAct.REPLY), button(_("✨ Draft"), ConvAct.DRAFT)])
    deal_row = [button(_("💼 Deal"), ConvAct.DEAL)]
    if writes:
        deal_row.append(button(_("📊 Stage"), ConvAct.STAGE))
    rows.append(deal_row)
    if works:
        if closed:
            rows.append([button(_("🔓 Reopen"), ConvAct.REOPEN)])
        else:
            last = []
            if not mine:
                last.append(button(_("🙋 Assign to me"), ConvAct.ASSIGN))
            last.append(button(_("⏰ Snooze 1h"), ConvAct.SNOOZE))
            last.append(button(_("✅ Close"), ConvAct.CLOSE))
            rows.append(last)
    return InlineKeyboardMarkup(inline_keyboard=rows)


def workspaces_keyboard(
    workspaces: list[tuple[Tenant, Role]], current_id: int | None
) -> InlineKeyboardMarkup:
    """One button per workspace; the current one is ticked."""
    rows = []
    for tenant, _role in workspaces:
        mark = "✓ " if tenant.id == current_id else ""
        rows.append(
            [
                InlineKeyboardButton(
                    text=f"{mark}{tenant.name}"[:64],
                    callback_data=WorkspacePick(id=tenant.id).pack(),
                )
            ]
        )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def pager_row(page: int, pages: int, data: Callable[[int], str]) -> list[InlineKeyboardButton]:
    """◀️, "page 2/3", ▶️ for a numbered list; ``data(n)`` is the callback data of page n."""
    row = []
    if page > 1:
        row.append(InlineKeyboardButton(text="◀️", callback_data=data(page - 1)))
    label = _("page {page}/{pages}").format(page=page, pages=pages)
    row.append(InlineKeyboardButton(text=label, callback_data=data(page)))
    if page < pages:
        row.append(InlineKeyboardButton(text="▶️", callback_data=data(page + 1)))
    return row


def draft_keyboard(draft_id: int) -> InlineKeyboardMarkup:
    """Send, Edit; Regenerate, Reject under a pending draft."""

    def button(text: str, act: DraftAct) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            text=text, callback_data=DraftAction(act=act, id=draft_id).pack()
        )

    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(_("✅ Send"), DraftAct.SEND), button(_("✏️ Edit"), DraftAct.EDIT)],
            [
                button(_("🔄 Regenerate"), DraftAct.REGENERATE),
                button(_("🗑 Reject"), DraftAct.REJECT),
            ],
        ]
    )
