"""The WhatsApp channel (Cloud API through pywa): adapter, webhook views, signatures."""

from .adapter import WhatsAppAdapter, send_error_from
from .parse import parse_webhook
from .signature import verify_signature
from .transport import GraphRewriteTransport

__all__ = [
    "GraphRewriteTransport",
    "WhatsAppAdapter",
    "parse_webhook",
    "send_error_from",
    "verify_signature",
]
