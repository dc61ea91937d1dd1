"""Callback data factories: short prefixes and integer ids keep every button under 64 bytes."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData


class ConvAct(StrEnum):
    """What a notification button does to its conversation."""

    REPLY = "r"
    CLOSE = "c"
    ASSIGN = "a"
    SNOOZE = "s"
    DEAL = "d"  # open the deal card of the conversation's contact (bot/routers/pipeline/deals.py)
    STAGE = "g"  # stage buttons for that deal (bot/routers/pipeline/deals.py)
    DRAFT = "f"  # an AI reply draft for the lead's latest message (bot/routers/ai/drafts.py)
    HAND_BACK = "b"  # let the AI act again after a hand-off (bot/routers/ai/drafts.py)
    REOPEN = "o"  # reopen a closed conversation
    STATE = "i"  # the state row of a notification: tells who has it, snoozed until when


class ConvAction(CallbackData, prefix="cv"):
    """A button on a lead notification: ``cv:<action>:<conversation id>``."""

    act: ConvAct
    id: int


class WorkspacePick(CallbackData, prefix="ws"):
    """A workspace in the ``/workspace`` list: ``ws:<tenant id>``."""

    id: int


class DealOpen(CallbackData, prefix="dl"):
    """Open a deal card: ``dl:<deal id>`` (shared by deals, contacts and inbox views)."""

    id: int


class ContactOpen(CallbackData, prefix="ct"):
    """Open a contact card: ``ct:<contact id>``."""

    id: int


class ContactsPage(CallbackData, prefix="cp"):
    """A page of the ``/contacts`` list of recent contacts: ``cp:<page, from 1>``."""

    page: int


class ContactAct(StrEnum):
    """What a contact card button starts."""

    TAG = "t"
    NOTE = "n"


class ContactAction(CallbackData, prefix="ca"):
    """A contact card button: ``ca:<action>:<contact id>``."""

    act: ContactAct
    id: int


class InboxPage(CallbackData, prefix="ib"):
    """A page of the ``/inbox`` list: ``ib:<page, from 1>``."""

    page: int


class InboxOpen(CallbackData, prefix="io"):
    """Open a conversation of the ``/inbox`` list: ``io:<conversation id>``."""

    id: int


class TeamMember(CallbackData, prefix="tm"):
    """Pick a new role for a member of ``/team``: ``tm:<tenant id>:<user id>``."""

    ws: int
    uid: int


class TeamRole(CallbackData, prefix="tr"):
    """Give a member a role: ``tr:<tenant id>:<user id>:<role>``."""

    ws: int
    uid: int
    role: str


class TeamRemove(CallbackData, prefix="tx"):
    """Remove a member: ``tx:<tenant id>:<user id>:<0 ask, 1 confirmed>``."""

    ws: int
    uid: int
    ok: int = 0


class TeamList(CallbackData, prefix="tz"):
    """Back to the ``/team`` list of a workspace: ``tz:<tenant id>``."""

    ws: int


class PipelineShow(CallbackData, prefix="ps"):
    """A pipeline's stages (``stage`` 0) or a page of one stage's deals: ``ps:<p>:<s>:<page>``."""

    pipeline: int
    stage: int = 0
    page: int = 0


class DealView(StrEnum):
    """Which view of a deal a stage button re-renders after the move."""

    CARD = "c"  # the full deal card
    STAGES = "s"  # the short stage picker of a notification's Stage button


class DealMove(CallbackData, prefix="dg"):
    """Move a deal to a stage: ``dg:<deal id>:<stage id>:<view>``."""

    id: int
    stage: int
    view: DealView = DealView.CARD


class DealEditAct(StrEnum):
    """What a deal card button asks the operator for."""

    TITLE = "t"
    VALUE = "v"
    NOTE = "n"


class DealEdit(CallbackData, prefix="de"):
    """Start a short dialogue on a deal: ``de:<what>:<deal id>``."""

    act: DealEditAct
    id: int


class DealNew(CallbackData, prefix="dn"):
    """Open the deal of a conversation's contact, creating it when there is none: ``dn:<conv>``."""

    conversation: int


class DraftAct(StrEnum):
    """What a draft's button does."""

    SEND = "s"
    EDIT = "e"
    REGENERATE = "g"
    REJECT = "x"


class DraftAction(CallbackData, prefix="df"):
    """A button under an AI draft: ``df:<action>:<draft id>``."""

    act: DraftAct
    id: int


class InviteAnswer(CallbackData, prefix="iv"):
    """Join (``ok=1``) or decline an invite addressed to the presser: ``iv:<invite id>:<ok>``."""

    id: int
    ok: int = 0
