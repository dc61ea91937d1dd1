"""The control API's input checks (the side that plays the users): a 422 names a bad field."""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import HTTPException

from sandbox.telegram.wire import MEDIA_FIELDS

_INT64 = 2**63


def control_int(payload: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    """An integer field of a control API request, or a 422 that names it."""
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise HTTPException(422, f"{name}: field required")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        number = int(value)
    else:
        raise HTTPException(422, f"{name}: must be an integer, not {value!r:.40}")
    if not -_INT64 <= number < _INT64:
        raise HTTPException(422, f"{name}: out of range")
    return number


def control_float(payload: dict[str, Any], name: str) -> float:
    """A number field of a control API request, or a 422 that names it."""
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise HTTPException(422, f"{name}: must be a number")
    try:
        number = float(value)
    except ValueError:
        raise HTTPException(422, f"{name}: must be a number") from None
    if not math.isfinite(number):
        raise HTTPException(422, f"{name}: must be a finite number")
    return number


def control_ids(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its id fields checked and made integers (a 422 names a bad one)."""
    checked = dict(payload)
    for name in (
        "from_user_id",
        "chat_id",
        "message_id",
        "message_thread_id",
        "reply_to_message_id",
        "user_id",
    ):
        if name in checked:
            checked[name] = control_int(checked, name)
    for name in (
        "connection_id",
        "text",
        "business_connection_id",
        "first_name",
        "last_name",
        "username",
        "language_code",
        "chat_title",
        "filename",
        "mime_type",
        *(f"{kind}_base64" for kind in MEDIA_FIELDS),
    ):
        value = checked.get(name)
        if name == "connection_id" and isinstance(value, int) and not isinstance(value, bool):
            continue
        if value is not None and not isinstance(value, str):
            raise HTTPException(422, f"{name}: must be a string")
    ids = checked.get("delete_message_ids")
    if ids is not None:
        if not isinstance(ids, list):
            raise HTTPException(422, "delete_message_ids: must be a list of message ids")
        checked["delete_message_ids"] = [
            control_int({"delete_message_ids": i}, "delete_message_ids", required=True) for i in ids
        ]
    return checked
