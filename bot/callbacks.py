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


class ConvAction(CallbackData, prefix="cv"):
    """A button on a lead notification: ``cv:<action>:<conversation id>``."""

    act: ConvAct
    id: int


class WorkspacePick(CallbackData, prefix="ws"):
    """A workspace in the ``/workspace`` list: ``ws:<tenant id>``."""

    id: int
