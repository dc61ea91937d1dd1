"""How deals and pipelines look in the operator bot: HTML texts, inline keyboards, refusals.

Everything a lead or an operator typed (titles, names, notes, messages, stage names) is escaped.
Money is formatted for the operator's locale with Babel (``€1,500.00`` / ``1 500,00 €``).
"""

from __future__ import annotations

import decimal
import html
from collections.abc import Iterable

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from babel.numbers import format_currency

from bot.callbacks import DealEdit, DealEditAct, DealMove, DealNew, DealOpen, DealView, PipelineShow
from bot.routers.pipeline.deal_amounts import AmountError
from bot.senders.notification_content import media_label
from crm.errors import NotFound, PermissionDenied, ServiceError, ValidationFailed
from crm.messaging import MessageKind
from crm.models import Deal, Direction, Message, Role, Stage, StageKind
from crm.services.access import Actor
from crm.services.accounts.workspaces import same_default_stage
from crm.services.pipeline.deal_cards import DealCard, StageDeals
from crm.services.pipeline.pipelines import PipelineSummary

BUTTON_TEXT = 60
MESSAGE_EXCERPT = 200
NOTE_EXCERPT = 300


def current_locale() -> str:
    """The locale of the update (or worker rendering) in progress, English outside one."""
    try:
        return str(get_i18n().current_locale)
    except LookupError:
        return "en"


def money(value: decimal.Decimal | int | str, currency: str) -> str:
    """A value in its currency, formatted for the operator's locale."""
    amount = decimal.Decimal(str(value))
    try:
        return format_currency(amount, currency, locale=current_locale())
    except (ValueError, LookupError):
        return f"{amount} {currency}"


def totals_text(totals: dict[str, decimal.Decimal]) -> str:
    """Value totals per currency, e.g. ``€1,500.00 + $200.00``."""
    return " + ".join(money(total, code) for code, total in totals.items())


def deals_count(n: int) -> str:
    """``1 deal`` / ``5 deals``, localized with plurals."""
    return _("{n} deal", "{n} deals", n).format(n=n)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stage_label(stage: Stage) -> str:
    if stage.name.casefold() in same_default_stage(
        "Won" if stage.kind is StageKind.WON else "Lost"
    ):
        return stage.name  # "Won (won)", "Выиграна (выиграна)" would say it twice
    if stage.kind is StageKind.WON:
        return _("{stage} (won)").format(stage=stage.name)
    if stage.kind is StageKind.LOST:
        return _("{stage} (lost)").format(stage=stage.name)
    return stage.name


# ---- pipeline and stage lists ----------------------------------------------------------------


def pipeline_text(summary: PipelineSummary) -> str:
    """A pipeline's stages, each with its deal count and value totals."""
    lines = [_("📊 <b>{pipeline}</b>").format(pipeline=html.escape(summary.pipeline.name)), ""]
    open_count = 0
    open_totals: dict[str, decimal.Decimal] = {}
    for row in summary.stages:
        label = html.escape(_stage_label(row.stage))
        if row.count:
            lines.append(
                _("<b>{stage}</b>: {deals} · {value}").format(
                    stage=label, deals=deals_count(row.count), value=totals_text(row.totals)
                )
            )
        else:
            lines.append(_("<b>{stage}</b>: no deals").format(stage=label))
        if row.stage.kind is StageKind.OPEN:
            open_count += row.count
            for code, total in row.totals.items():
                open_totals[code] = open_totals.get(code, decimal.Decimal(0)) + total
    lines.append("")
    if open_count:
        lines.append(
            _("Open: {deals} · {value}").format(
                deals=deals_count(open_count), value=totals_text(dict(sorted(open_totals.items())))
            )
        )
    else:
        lines.append(_("No open deals. Add one with /newdeal title value."))
    lines.append(_("Tap a stage to see its deals."))
    return "\n".join(lines)


def pipeline_keyboard(summary: PipelineSummary) -> InlineKeyboardMarkup:
    """One button per stage (its deals), then a pipeline picker when there are several."""
    pipeline_id = summary.pipeline.id
    rows = [
        [
            InlineKeyboardButton(
                text=_short(f"{row.stage.name} · {row.count}", BUTTON_TEXT),
                callback_data=PipelineShow(pipeline=pipeline_id, stage=row.stage.id).pack(),
            )
        ]
        for row in summary.stages
    ]
    if len(summary.pipelines) > 1:
        for pipeline in summary.pipelines:
            mark = "✓ " if pipeline.id == pipeline_id else "📁 "
            rows.append(
                [
                    InlineKeyboardButton(
                        text=_short(mark + pipeline.name, BUTTON_TEXT),
                        callback_data=PipelineShow(pipeline=pipeline.id).pack(),
                    )
                ]
            )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def stage_deals_text(page: StageDeals) -> str:
    """The header of one page of a stage's deals."""
    lines = [
        _("📊 {pipeline} → <b>{stage}</b>").format(
            pipeline=html.escape(page.pipeline.name), stage=html.escape(_stage_label(page.stage))
        ),
        deals_count(page.total),
    ]
    if not page.total:
        lines.append(_("No deals in this stage."))
    elif page.pages > 1:
        lines.append(_("Page {page} of {pages}").format(page=page.page + 1, pages=page.pages))
    return "\n".join(lines)


def _deal_button(deal: Deal) -> InlineKeyboardButton:
    price = money(deal.value, deal.currency)
    title = _short(deal.title, BUTTON_TEXT - len(price) - 3)
    return InlineKeyboardButton(
        text=f"{title} · {price}", callback_data=DealOpen(id=deal.id).pack()
    )


def stage_deals_keyboard(page: StageDeals) -> InlineKeyboardMarkup:
    """A button per deal of the page, ◀️ ▶️ between pages, and back to the stages."""
    rows = [[_deal_button(deal)] for deal in page.deals]
    pipeline_id, stage_id = page.pipeline.id, page.stage.id
    nav = []
    if page.page > 0:
        nav.append(
            InlineKeyboardButton(
                text="◀️",
                callback_data=PipelineShow(
                    pipeline=pipeline_id, stage=stage_id, page=page.page - 1
                ).pack(),
            )
        )
    if page.page + 1 < page.pages:
        nav.append(
            InlineKeyboardButton(
                text="▶️",
                callback_data=PipelineShow(
                    pipeline=pipeline_id, stage=stage_id, page=page.page + 1
                ).pack(),
            )
        )
    if nav:
        rows.append(nav)
    rows.append(
        [
            InlineKeyboardButton(
                text=_("⬅️ All stages"), callback_data=PipelineShow(pipeline=pipeline_id).pack()
            )
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


# ---- the deal card ---------------------------------------------------------------------------


def _message_line(message: Message) -> str:
    arrow = "←" if message.direction is Direction.IN else "→"
    body = message.text
    if message.kind is not MessageKind.TEXT:
        body = f"{media_label(message.kind.value)} {body}".strip()
    return f"{arrow} {html.escape(_short(body, MESSAGE_EXCERPT))}"


def card_text(card: DealCard) -> str:
    """The deal card: title, value, stage, people, latest note and messages."""
    deal = card.deal
    none = "—"
    stage = next((s for s in card.stages if s.id == deal.stage_id), None)
    stage_name = _stage_label(stage) if stage is not None else none
    contact = card.contact
    contact_name = none
    if contact is not None:
        contact_name = contact.name or contact.phone or contact.email or f"#{contact.id}"
    lines = [
        _("💼 <b>{title}</b>").format(title=html.escape(deal.title)),
        _("💰 Value: {value}").format(value=money(deal.value, deal.currency)),
        _("📊 Stage: <b>{stage}</b> ({pipeline})").format(
            stage=html.escape(stage_name), pipeline=html.escape(card.pipeline.name)
        ),
        _("👤 Contact: {contact}").format(contact=html.escape(contact_name)),
        _("🏢 Company: {company}").format(
            company=html.escape(card.company.name) if card.company is not None else none
        ),
        _("🧑‍💼 Owner: {owner}").format(
            owner=html.escape(card.owner.name or f"#{card.owner.id}")
            if card.owner is not None
            else none
        ),
    ]
    if card.last_note is not None:
        lines.append(
            _("📝 Notes: {count}, latest: {note}").format(
                count=card.note_count, note=html.escape(_short(card.last_note.body, NOTE_EXCERPT))
            )
        )
    if card.recent_messages:
        lines.append("")
        lines.append(_("💬 Latest messages:"))
        lines.extend(_message_line(m) for m in card.recent_messages)
    return "\n".join(lines)


def _stage_buttons(
    deal_id: int, current_id: int, stages: Iterable[Stage], view: DealView
) -> list[list[InlineKeyboardButton]]:
    buttons = [
        InlineKeyboardButton(
            text=_short(("✓ " if stage.id == current_id else "") + stage.name, BUTTON_TEXT),
            callback_data=DealMove(id=deal_id, stage=stage.id, view=view).pack(),
        )
        for stage in stages
    ]
    return [buttons[i : i + 2] for i in range(0, len(buttons), 2)]


def card_keyboard(card: DealCard) -> InlineKeyboardMarkup:
    """A button per stage (the current one ticked), then edit title, value, add a note."""
    deal = card.deal
    rows = _stage_buttons(deal.id, deal.stage_id, card.stages, DealView.CARD)
    rows.append(
        [
            InlineKeyboardButton(
                text=_("✏️ Title"),
                callback_data=DealEdit(act=DealEditAct.TITLE, id=deal.id).pack(),
            ),
            InlineKeyboardButton(
                text=_("💰 Value"),
                callback_data=DealEdit(act=DealEditAct.VALUE, id=deal.id).pack(),
            ),
            InlineKeyboardButton(
                text=_("📝 Note"),
                callback_data=DealEdit(act=DealEditAct.NOTE, id=deal.id).pack(),
            ),
        ]
    )
    rows.append(
        [
            InlineKeyboardButton(
                text=_("📊 Pipeline"),
                callback_data=PipelineShow(pipeline=deal.pipeline_id, stage=deal.stage_id).pack(),
            )
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


# ---- the notification's Stage button -----------------------------------------------------------


def stages_text(card: DealCard) -> str:
    """The short stage picker of a deal."""
    stage = next((s for s in card.stages if s.id == card.deal.stage_id), None)
    return _("💼 <b>{title}</b> is in <b>{stage}</b>. Move it to:").format(
        title=html.escape(card.deal.title),
        stage=html.escape(_stage_label(stage) if stage is not None else "—"),
    )


def stages_keyboard(card: DealCard) -> InlineKeyboardMarkup:
    """A button per stage (the current one ticked) and one that opens the full card."""
    deal = card.deal
    rows = _stage_buttons(deal.id, deal.stage_id, card.stages, DealView.STAGES)
    rows.append(
        [
            InlineKeyboardButton(
                text=_("💼 Open the deal"), callback_data=DealOpen(id=deal.id).pack()
            )
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def no_deal_text(contact_name: str) -> str:
    """What the Deal and Stage buttons say when the lead has no open deal."""
    return _("<b>{name}</b> has no open deal yet.").format(name=html.escape(contact_name))


def no_deal_keyboard(conversation_id: int) -> InlineKeyboardMarkup:
    """One button that creates the lead's deal."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("➕ Create a deal"),
                    callback_data=DealNew(conversation=conversation_id).pack(),
                )
            ]
        ]
    )


# ---- refusals and bad values ---------------------------------------------------------------


def deal_refusal(exc: ServiceError, actor: Actor | None) -> str:
    """Why a deal action was refused, in the operator's language."""
    if isinstance(exc, PermissionDenied):
        if actor is None or actor.role is Role.VIEWER:
            return _("Viewers can look at deals but cannot change them.")
        return _("Only the deal's owner or an admin can change this deal.")
    if isinstance(exc, NotFound):
        return _("This deal or pipeline no longer exists.")
    return _("That did not work: {reason}").format(reason=exc.detail)


def amount_error(exc: AmountError, text: str) -> str:
    """A value that could not be read: the field and the reason."""
    reasons = {
        "empty": _("Value: send a number, for example 1500 or 1 500,50."),
        "not_number": _("Value: “{text}” is not a number. Write it like 1500, 1 500,50 or 1500.5."),
        "negative": _("Value: it cannot be negative."),
        "decimals": _("Value: use at most 2 digits after the decimal point."),
        "too_large": _("Value: the number is too large."),
        "currency": _("Value: “{code}” is not a currency code (use EUR, USD, RUB…)."),
    }
    return reasons.get(exc.reason, reasons["not_number"]).format(
        text=html.escape(text[:50]), code=html.escape(exc.detail)
    )


def validation_text(exc: ValidationFailed) -> str:
    """The first field a service found invalid, and why (HTML)."""
    names = {"title": _("Title"), "value": _("Value"), "currency": _("Currency"), "body": _("Note")}
    error = exc.errors[0]
    return _("{field}: {reason}").format(
        field=names.get(error.field, error.field), reason=html.escape(error.reason)
    )
