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
    DEAL = "d"  # open the deal card of the conversation's contact (bot/routers/deals.py)
    STAGE = "g"  # stage buttons for that deal (bot/routers/deals.py)


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
