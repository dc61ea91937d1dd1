"""Shared user-facing wording: role names, drafts and the refusals of the crm services."""

from __future__ import annotations

import html

from aiogram.utils.i18n import gettext as _

from crm.errors import PermissionDenied, ServiceError
from crm.models import Draft, DraftSource, DraftStatus, Role
from crm.services.access import Actor
from crm.services.ai.drafts import DraftDecided


def role_name(role: Role | str) -> str:
    """The localized name of a role."""
    names = {
        Role.OWNER: _("owner"),
        Role.ADMIN: _("admin"),
        Role.BIDI: _("member"),
        Role.VIEWER: _("viewer"),
    }
    return names.get(Role(role), str(role))


def no_workspace() -> str:
    """What a user without a workspace is told."""
    return _("You have no workspace yet: send /start to create one.")


def draft_decided(status: DraftStatus) -> str:
    """Why a draft button does nothing any more: how the draft was decided."""
    texts = {
        DraftStatus.SENT: _("This draft was already sent to the lead."),
        DraftStatus.EDITED: _("This draft was already sent, after editing."),
        DraftStatus.REJECTED: _("This draft was already rejected."),
        DraftStatus.REGENERATED: _("This draft was already replaced by a new one."),
    }
    return texts.get(status, _("This draft was already decided."))


def refusal(exc: ServiceError, actor: Actor | None) -> str:
    """A short localized explanation of why a service refused an action."""
    if exc.code == "window_closed":
        return _(
            "Not sent: WhatsApp allows free-form replies only within 24 hours of the lead's "
            "last message. Send an approved template instead."
        )
    if isinstance(exc, DraftDecided):
        return draft_decided(exc.decided)
    if exc.code == "opted_out":
        return _("Not sent: the lead opted out of messages.")
    if isinstance(exc, PermissionDenied):
        if actor is not None and actor.role is Role.VIEWER:
            return _("Viewers cannot send messages or change conversations.")
        return _("You may not do that: the conversation is assigned to another member.")
    return _("That did not work: {reason}").format(reason=exc.detail)


def render_draft(draft: Draft) -> str:
    """The HTML of a draft: who wrote it, the text, and why (all escaped)."""
    if draft.source is DraftSource.OFFLINE and draft.model:
        # The model was asked and failed (the rationale says why): this is the fallback.
        head = _(
            "✨ <b>Draft</b> (offline suggestion: the AI model {model} did not answer)"
        ).format(model=html.escape(draft.model))
    elif draft.source is DraftSource.OFFLINE:
        head = _("✨ <b>Draft</b> (offline drafter, no AI model configured)")
    else:
        head = _("✨ <b>Draft</b> by {model}").format(model=html.escape(draft.model or "AI"))
    lines = [head, "", html.escape(draft.text)]
    if draft.rationale:
        lines += ["", f"<i>{html.escape(draft.rationale)}</i>"]
    return "\n".join(lines)
