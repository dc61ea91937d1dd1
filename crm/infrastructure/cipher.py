"""Encryption at rest for channel credentials (tokens, app secrets)."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken

from crm.infrastructure.redaction import register_secret

# Credential fields whose values are secrets (an id or a phone number is not).
SECRET_FIELDS = ("token", "secret", "key", "password")


class CredentialCipher:
    """Fernet (AES-128-CBC + HMAC) with a key derived from the service's secret key."""

    def __init__(self, secret_key: str) -> None:
        # A fixed label keeps this key apart from any other use of the same secret.
        digest = hashlib.sha256(b"crm-channel-credentials:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, credentials: dict[str, str]) -> str:
        """The credentials as an opaque token safe to store."""
        _register_secrets(credentials)
        return self._fernet.encrypt(json.dumps(credentials, sort_keys=True).encode()).decode()

    def decrypt(self, token: str) -> dict[str, str]:
        """The credentials back; raises ValueError when the secret key changed."""
        try:
            data = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise ValueError(
                "channel credentials cannot be decrypted: was CRM_SECRET_KEY changed?"
            ) from None
        credentials = {str(k): str(v) for k, v in data.items()}
        _register_secrets(credentials)
        return credentials


def _register_secrets(credentials: dict[str, str]) -> None:
    # Whatever logs them later, in any encoding, is scrubbed.
    for name, value in credentials.items():
        if any(word in name.lower() for word in SECRET_FIELDS):
            register_secret(str(value))
