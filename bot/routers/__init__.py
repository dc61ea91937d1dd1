"""One aiogram Router per feature of the operator bot."""

from __future__ import annotations

from aiogram import Router

from bot.routers import help, inbox, lang, start, team


def build_routers() -> list[Router]:
    """Fresh feature routers, in the order they are tried."""
    return [
        start.build_router(),
        help.build_router(),
        team.build_router(),
        lang.build_router(),
        inbox.build_router(),
    ]
