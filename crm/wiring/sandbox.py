"""Sandbox-only wiring: connections served by the in-process emulators, their sign-in links."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from crm.messaging import ChannelKind, ConnectionInfo
from crm.services.access import Actor
from crm.services.inbox import connections as channel_service

if TYPE_CHECKING:
    from crm.wiring import ChannelWiring


def at_sandbox_base(info: ConnectionInfo, base_url: str) -> ConnectionInfo:
    """A sandbox connection pointed at the emulators served at ``base_url``."""
    base = base_url.rstrip("/")
    settings = dict(info.settings)
    if info.kind is ChannelKind.WHATSAPP:
        settings["graph_base_url"] = f"{base}/sandbox/graph"
    elif info.kind is ChannelKind.TELEGRAM:
        settings["api_base"] = f"{base}/sandbox/telegram"
    return dataclasses.replace(info, settings=settings)


def register_with_emulator(wiring: ChannelWiring, info: ConnectionInfo) -> None:
    """Tell the in-process emulator about a sandbox connection (its URL may have changed)."""
    url = wiring.webhook_url(info)
    if info.kind is ChannelKind.WHATSAPP and wiring.whatsapp_emulator is not None:
        wiring.whatsapp_emulator.register_connection(
            str(info.id),
            phone_id=str(info.settings["phone_id"]),
            token=info.credentials["token"],
            app_secret=info.credentials["app_secret"],
            webhook_url=url,
            waba_id=str(info.settings.get("waba_id") or "") or None,
            display_phone_number=str(info.settings.get("display_phone_number") or "") or None,
        )
    elif info.kind is ChannelKind.TELEGRAM and wiring.telegram_emulator is not None:
        wiring.telegram_emulator.register_bot(
            str(info.id), info.credentials["token"], str(info.settings.get("username") or "")
        )
        wiring.telegram_emulator.set_webhook(
            info.credentials["token"], url, info.credentials["webhook_secret"]
        )
    else:
        return
    wiring.registered.add(info.id)


async def sync_sandbox(wiring: ChannelWiring) -> int:
    """Register stored sandbox connections the emulators do not know yet; returns how many.

    Called at start-up and before each sandbox request, so a connection added by another
    process (``crm tenants create``, ``crm channels add --sandbox``) works at once.
    """
    if wiring.whatsapp_emulator is None:
        return 0
    stored = set(await channel_service.sandbox_connection_ids())
    if stored <= wiring.registered:
        return 0
    infos = await channel_service.sandbox_connections(wiring.cipher)
    fresh = [info for info in infos if info.id not in wiring.registered]
    for info in fresh:
        register_with_emulator(wiring, info)
    return len(fresh)


async def add_sandbox_connections(wiring: ChannelWiring, tenant_id: int) -> list[ConnectionInfo]:
    """Give a new tenant a WhatsApp number and a Telegram lead bot on the emulators."""
    actor = Actor.system(tenant_id)
    added = []
    for kind in (ChannelKind.WHATSAPP, ChannelKind.TELEGRAM):
        new = channel_service.sandbox_connection(kind, tenant_id, wiring.settings.base_url)
        row = await channel_service.do_add_connection(actor, wiring.cipher, new, sandbox=True)
        info = channel_service.connection_info(row, wiring.cipher)
        if wiring.whatsapp_emulator is not None:
            register_with_emulator(wiring, info)
        added.append(info)
    return added


OPERATOR_CONNECTION = "operator"  # the operator bot's connection_id in the Telegram emulator
OPERATOR_SANDBOX_BOT_ID = 7000000001
OPERATOR_SANDBOX_USERNAME = "crm_operator_bot"


def sandbox_sign_in_url(base_url: str, token: str) -> str:
    """The sandbox page's address that signs in with ``token`` (crm.services.accounts.signin)."""
    return f"{base_url}/sandbox?signin={token}"
