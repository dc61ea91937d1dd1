"""Request dependencies: the acting member from the bearer API key, and the app's collaborators."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crm.assistant import AiAssistant
from crm.errors import Unauthenticated
from crm.infrastructure.cipher import CredentialCipher
from crm.services.access import Actor
from crm.services.accounts.api_keys import authenticate_api_key


async def current_actor(request: Request) -> Actor:
    """The Actor behind ``Authorization: Bearer <api key>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
    return await authenticate_api_key(token.strip())


async def current_assistant(request: Request) -> AiAssistant:
    """The AI the composition root put on ``app.state.assistant``."""
    return request.app.state.assistant


async def credential_cipher(request: Request) -> CredentialCipher:
    """The cipher of stored credentials, on ``app.state.cipher``."""
    return request.app.state.cipher


ActorDep = Annotated[Actor, Depends(current_actor)]
AssistantDep = Annotated[AiAssistant, Depends(current_assistant)]
CipherDep = Annotated[CredentialCipher, Depends(credential_cipher)]
