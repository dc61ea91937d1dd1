"""Meta's webhook signature: ``X-Hub-Signature-256: sha256=<HMAC-SHA256(app secret, body)>``."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def verify_signature(app_secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the HMAC-SHA256 of the raw ``body`` under ``app_secret``."""
    if not app_secret or not header or not header.startswith(PREFIX):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[len(PREFIX) :].strip().lower().encode())
