"""`crm up` restarted in sandbox mode: the operator bot still reaches the operators."""

from __future__ import annotations

from pathlib import Path

from crm.settings import Settings
from tests.support.bot import (
    lead_received,
    lead_writes,
    onboard_owner,
    say,
    sent,
    wait_for,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import running_service

OWNER = 5101


async def test_after_a_restart_the_operator_is_notified_without_a_new_start(
    settings: Settings, tmp_path: Path
) -> None:
    async with running_service(settings, media_dir=tmp_path / "media") as service:
        owner = await onboard_owner(service, OWNER, "Olga")
        connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
        await lead_writes(service, connection_id, "Anna", "Hello before the restart")
        before = await wait_for(service, OWNER, "Hello before the restart")

    # The same data directory, a new process (and a new port, as with `crm up --port`).
    async with running_service(settings, media_dir=tmp_path / "media") as service:
        await lead_writes(service, connection_id, "Anna", "Hello after the restart")
        after = await wait_for(service, OWNER, "Hello after the restart")
        assert after["message_id"] > before["message_id"]
        ids = [m["message_id"] for m in await sent(service, OWNER)]
        assert ids == sorted(set(ids))  # one chat, ids only ever increase

        # A reply to a notification sent before the restart still reaches that lead.
        await say(service, OWNER, "Answer from before", reply_to_message_id=before["message_id"])

        async def delivered() -> bool:
            return "Answer from before" in await lead_received(service)

        await eventually(delivered, within=15)
