"""Request dependencies: the acting member from the bearer API key, and pagination input."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crm.services.access import Actor
from crm.services.apikeys import authenticate_api_key
from crm.services.errors import Unauthenticated


async def current_actor(request: Request) -> Actor:
    """The Actor behind ``Authorization: Bearer <api key>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
    return await authenticate_api_key(token.strip())


ActorDep = Annotated[Actor, Depends(current_actor)]
