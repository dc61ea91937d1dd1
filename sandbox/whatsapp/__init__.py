"""A local WhatsApp Cloud API (DESIGN section 6): Graph endpoints, signed webhooks, control API.

pywa talks to it unchanged: its requests to ``https://graph.facebook.com/v22.0/...`` are sent to
``http://HOST:PORT/sandbox/graph/v22.0/...`` instead (the adapter's transport does the rewrite).
The emulator answers in Meta's wire format, errors included, and pushes webhooks signed with the
connection's app secret, the way Meta does: from the background, retried when the receiver is
down, optionally duplicated or shuffled. The ``/sandbox/whatsapp/...`` control API plays the lead
(inbound messages, marketing opt-out) and shows what the business sent (the outbox). With a
``state_path`` the numbers, the outbox, the media and each lead's 24-hour window survive a restart.

This package imports nothing from ``channels.whatsapp``: it is the other side of the wire. One
module per area: ``store``, ``graph`` (the business's side), ``lead`` (the lead's side),
``webhooks`` (pushes), ``control`` (the control API), ``snapshot`` (the state file); ``emulator``
puts them together in ``WhatsAppEmulator``.
"""

from sandbox.whatsapp.emulator import WhatsAppEmulator, create_emulator_app, main
from sandbox.whatsapp.records import (
    DEFAULT_TEMPLATES,
    Delivery,
    EmulatedConnection,
    OutboxEntry,
    StoredMedia,
    Template,
)
from sandbox.whatsapp.snapshot import PERSISTED_OUTBOX
from sandbox.whatsapp.wire import CONTROL_PREFIX, GRAPH_PREFIX, WINDOW, GraphError, sign_body

__all__ = [
    "CONTROL_PREFIX",
    "DEFAULT_TEMPLATES",
    "GRAPH_PREFIX",
    "PERSISTED_OUTBOX",
    "WINDOW",
    "Delivery",
    "EmulatedConnection",
    "GraphError",
    "OutboxEntry",
    "StoredMedia",
    "Template",
    "WhatsAppEmulator",
    "create_emulator_app",
    "main",
    "sign_body",
]
