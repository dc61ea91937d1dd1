"""Meta's wire basics: paths, ids, webhook signatures and the Graph API's error shape."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse

GRAPH_PREFIX = "/sandbox/graph"
CONTROL_PREFIX = "/sandbox/whatsapp"
WINDOW = dt.timedelta(hours=24)
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")
FREE_FORM_TYPES = (*MEDIA_TYPES, "text", "interactive", "reaction", "location")
VERSION_RE = re.compile(r"^v\d+(\.\d+)?$")
FaultKind = Literal["rate_limit", "pair_rate_limit", "server_error", "slow"]


def utcnow() -> dt.datetime:
    """Now, timezone-aware (UTC)."""
    return dt.datetime.now(dt.UTC)


def new_wamid() -> str:
    """A fresh message id in Meta's shape."""
    # Real ids are base64 of an opaque binary blob, prefixed with "wamid.".
    return "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()


def new_numeric_id() -> str:
    """A fresh all-digit id (media ids)."""
    # pywa tells a media id from a path or URL by it being all digits, like Meta's ids.
    return str(secrets.randbelow(9 * 10**15) + 10**15)


def digits(value: str) -> str:
    """The digits of ``value`` (a phone number as a wa_id)."""
    return re.sub(r"\D", "", value)


# A business-scoped user id ("US.1349...", parent "US.ENT.1181..."): a lead with a username.
USER_ID_RE = re.compile(r"^[A-Z]{2}\.(ENT\.)?\d+$")


def lead_id(value: str) -> str:
    """A lead's key: a user id as is, a phone number as its digits (the wa_id)."""
    return value.strip() if USER_ID_RE.match(value.strip()) else digits(value)


def sign_body(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value Meta sends with ``body``."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class GraphError(Exception):
    """An error answered in the Graph API's shape."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        details: str | None = None,
        *,
        subcode: int | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or message
        self.subcode = subcode
        self.transient = transient

    def response(self) -> JSONResponse:
        """The JSON response Meta would give."""
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
            "fbtrace_id": "A" + secrets.token_urlsafe(16),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        return JSONResponse({"error": error}, status_code=self.status)


def invalid_parameter(details: str) -> GraphError:
    """Graph's ``(#100) Invalid parameter`` error."""
    return GraphError(400, 100, "(#100) Invalid parameter", details)


def no_object(object_id: str, method: str) -> GraphError:
    """Graph's error for an unknown (or foreign) object id."""
    return GraphError(
        400,
        100,
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        subcode=33,
    )


def unauthorized() -> GraphError:
    """Graph's error for a missing or wrong access token."""
    return GraphError(401, 190, "Invalid OAuth access token - Cannot parse access token")


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or Graph's invalid-parameter error."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise invalid_parameter("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise invalid_parameter("The request body must be a JSON object.")
    return body
