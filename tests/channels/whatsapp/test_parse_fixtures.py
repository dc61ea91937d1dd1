"""Replay of real WhatsApp webhook payloads (../shared/fixtures/whatsapp) through ``parse``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from channels.whatsapp import WhatsAppAdapter, parse_webhook
from crm.messaging import (
    DeliveryStatus,
    InboundEdit,
    InboundMessage,
    InboundPreference,
    InboundStatus,
    InboundUpdate,
    MediaRef,
    MessageKind,
)
from tests.support.whatsapp import whatsapp_connection

# tests/channels/whatsapp/<this file> -> the repo is parents[3]; fixtures sit beside the repo.
FIXTURES = (Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures").resolve()
WHATSAPP = FIXTURES / "whatsapp"
LEAD = "972987654321"
LEAD_USER_ID = "US.13491208655302741918"
LEAD_PARENT_ID = "US.ENT.11815799212886844830"


def _bodies(node: Any, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    # Files map case names to webhook bodies, sometimes nested one level deeper.
    if not isinstance(node, dict):
        return
    if "entry" in node:
        yield name, node
    for key, child in node.items():
        if key != "entry":
            yield from _bodies(child, f"{name}/{key}")


def _all_cases() -> list[tuple[str, dict[str, Any]]]:
    if not WHATSAPP.is_dir():
        return []
    return [
        case
        for path in sorted(WHATSAPP.glob("*.json"))
        for case in _bodies(json.loads(path.read_text(encoding="utf-8")), path.stem)
    ]


CASES = dict(_all_cases())


def _case(name: str) -> list[InboundUpdate]:
    if not CASES:
        pytest.skip(f"fixtures not found at {WHATSAPP}")
    return parse_webhook(json.dumps(CASES[name]).encode())


def _at(timestamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


def _one_message(name: str) -> InboundMessage:
    updates = _case(name)
    assert len(updates) == 1, updates
    [message] = updates
    assert isinstance(message, InboundMessage)
    assert message.sender_id == LEAD and message.phone == f"+{LEAD}"
    assert message.sender_name == "Test Name"
    assert message.sent_at.tzinfo is not None
    return message


@pytest.mark.parametrize("name", sorted(CASES) or ["<no fixtures>"])
def test_every_fixture_parses_without_raising(name: str) -> None:
    adapter = WhatsAppAdapter()
    if name not in CASES:
        pytest.skip(f"fixtures not found at {WHATSAPP}")
    body = json.dumps(CASES[name]).encode()
    updates = adapter.parse(whatsapp_connection(), body)
    assert isinstance(updates, list)
    for update in updates:
        at = getattr(update, "sent_at", None) or getattr(update, "at", None)
        assert at is not None and at.tzinfo is not None


def test_text() -> None:
    assert _one_message("message/text") == InboundMessage(
        external_id="wamid.xyzxyz",
        sender_id=LEAD,
        sent_at=_at(1697043223),
        kind=MessageKind.TEXT,
        text="Body Text",
        sender_name="Test Name",
        phone=f"+{LEAD}",
        whatsapp_user_id=LEAD_USER_ID,
        whatsapp_parent_user_id=LEAD_PARENT_ID,
    )


@pytest.mark.parametrize(
    ("name", "kind", "text", "media"),
    [
        ("image", MessageKind.IMAGE, "", MediaRef("65463453", "image/jpeg", None, "4654+8g=")),
        (
            "video",
            MessageKind.VIDEO,
            "caption",
            MediaRef(
                "765756756", "video/mp4", None, "Jh+2ij6PzUv/J2y+grrtegr/ZMzRxkEPwc24Oyib4s03w9Jc="
            ),
        ),
        (
            "document",
            MessageKind.DOCUMENT,
            "caption",
            MediaRef(
                "1234567890987654321",
                "application/pdf",
                "filename.pdf",
                "grwfwe/ZPx0wAbdfbdeFUNItPZ0RylL8gGUvdt3YFqc18SY=",
            ),
        ),
        ("audio", MessageKind.AUDIO, "", None),
        ("voice", MessageKind.VOICE, "", None),
        ("static_sticker", MessageKind.STICKER, "", None),
        ("animated_sticker", MessageKind.STICKER, "", None),
    ],
)
def test_media(name: str, kind: MessageKind, text: str, media: MediaRef | None) -> None:
    message = _one_message(f"message/{name}")
    assert (message.kind, message.text) == (kind, text)
    assert message.media is not None
    assert message.media.provider_media_id and message.media.mime_type and message.media.sha256
    if media is not None:
        assert message.media == media
    if kind is MessageKind.STICKER:
        assert message.payload["animated"] is (name == "animated_sticker")
    if name in ("video", "document", "audio"):
        assert message.payload["forwarded"] is True


def test_media_with_url_keeps_the_url() -> None:
    media = _one_message("message/media_with_url").media
    assert media is not None and media.provider_media_id == "65463453"
    assert media.url is not None and media.url.startswith("https://lookaside.fbsbx.com/")


@pytest.mark.parametrize(
    ("name", "emoji"),
    [("reaction", "\U0001f62e"), ("unreaction_empty", ""), ("unreaction_no_emoji", "")],
)
def test_reactions(name: str, emoji: str) -> None:
    message = _one_message(f"message/{name}")
    assert (message.kind, message.text) == (MessageKind.REACTION, emoji)
    assert message.reply_to_external_id == "wamid.yzxyzx="
    assert message.payload == {"emoji": emoji, "removed": not emoji}


def test_locations() -> None:
    current = _one_message("message/current_location")
    assert current.kind is MessageKind.LOCATION
    assert current.payload == {"forwarded": True, "latitude": 12.25089, "longitude": 43.90539}
    chosen = _one_message("message/chosen_location")
    assert chosen.text == "Facebook HQ"
    assert chosen.payload["address"] == "1 Hacker Way, Menlo Park, CA 94025"
    assert chosen.payload["latitude"] == 37.4611978


def test_contacts() -> None:
    message = _one_message("message/contacts")
    assert message.kind is MessageKind.CONTACTS
    assert message.text == "Chandler Bing, Monica, Rachel Green"
    assert len(message.payload["contacts"]) == 3


def test_replies_forwards_and_referrals() -> None:
    assert _one_message("message/reply").reply_to_external_id == "wamid.xyzxyz=="
    forwarded = _one_message("message/forwarded")
    assert forwarded.payload == {"forwarded": True} and forwarded.reply_to_external_id is None
    assert _one_message("message/forwarded_many_times").payload == {"frequently_forwarded": True}
    referral = _one_message("message/referral")
    assert referral.text == "BODY" and referral.payload["referral"]["ctwa_clid"] == "CTWA_CLID"


@pytest.mark.parametrize(
    ("name", "type_", "errors"),
    [
        ("unsupported", "unsupported", [131051]),
        ("unsupported_with_type", "pool", [131051]),
        ("order", "order", []),
        # Meta put this error on the webhook's value, not on the message: it still applies.
        ("interactive_message_with_err", "interactive", [131000]),
    ],
)
def test_unsupported(name: str, type_: str, errors: list[int]) -> None:
    message = _one_message(f"message/{name}")
    assert message.kind is MessageKind.UNSUPPORTED
    assert message.payload["type"] == type_ and message.payload["errors"] == errors
    assert len(message.payload.get("error_details", [])) == len(errors)


def test_value_level_errors_name_the_reason() -> None:
    message = _one_message("message/interactive_message_with_err")
    assert message.payload["error_details"] == ["Something went wrong: Unsupported webhook payload"]


def test_buttons_and_selections() -> None:
    button = _one_message("callback_button/button")
    assert (button.kind, button.text, button.reply_to_external_id) == (
        MessageKind.BUTTON,
        "title",
        "wamid.xyzxyz",
    )
    assert button.payload == {"button_id": "callback_data", "source": "reply_button"}
    quick = _one_message("callback_button/quick_reply")
    assert (quick.kind, quick.external_id) == (MessageKind.BUTTON, "wamid.xsidjw")
    assert quick.payload == {"button_id": "callback_data", "source": "quick_reply"}
    assert _one_message("callback_button/quick_reply_without_context").reply_to_external_id is None
    selection = _one_message("callback_selection/callback")
    assert (selection.kind, selection.text) == (MessageKind.INTERACTIVE, "title")
    assert selection.payload == {"button_id": "callback_data", "source": "list"}
    described = _one_message("callback_selection/description")
    assert described.payload["description"] == "description"


def test_flow_and_call_permission_replies_are_interactive() -> None:
    flow = _one_message("flow_completion/completion")
    assert flow.kind is MessageKind.INTERACTIVE and flow.payload["source"] == "nfm_reply"
    assert flow.text == "Sent"
    # response_json is a JSON string on the wire: the answers are kept decoded too.
    assert flow.payload["response"]["comment_text"] == "Comment Text"
    assert isinstance(flow.payload["nfm_reply"]["response_json"], str)
    permission = _one_message("call_permission_update/accept")
    assert permission.payload["source"] == "call_permission_reply"


@pytest.mark.parametrize(
    ("name", "status", "timestamp"),
    [
        ("sent", DeliveryStatus.SENT, 1698266945),
        ("delivered", DeliveryStatus.DELIVERED, 1698266945),
        ("read", DeliveryStatus.READ, 1689380458),
        ("played", DeliveryStatus.READ, 1689380458),  # a played voice note was read
        ("with_tracker", DeliveryStatus.SENT, 1698266945),
    ],
)
def test_statuses(name: str, status: DeliveryStatus, timestamp: int) -> None:
    tracker = "some data" if name == "with_tracker" else None
    assert _case(f"message_status/{name}") == [
        InboundStatus(
            external_id="wamid.xyzxyz",
            status=status,
            at=_at(timestamp),
            recipient_id=LEAD,
            tracker=tracker,
        )
    ]


def test_failed_status_carries_the_error() -> None:
    [failed] = _case("message_status/failed")
    assert isinstance(failed, InboundStatus)
    assert failed.status is DeliveryStatus.FAILED
    assert failed.error_code == 130472
    # The title and Meta's details (error_data.details), which say more.
    assert failed.error_title == (
        "User's number is part of an experiment: Failed to send message because this user's "
        "phone number is part of an experiment"
    )


def test_group_status_is_kept() -> None:
    [status] = _case("message_status/group")
    assert isinstance(status, InboundStatus) and status.status is DeliveryStatus.READ


def test_marketing_preferences() -> None:
    assert _case("user_marketing_preferences/resume") == [
        InboundPreference(sender_id="16505551234", opted_out=False, at=_at(1731705721))
    ]
    [signup] = _case("user_marketing_preferences/signup")
    assert isinstance(signup, InboundPreference) and not signup.opted_out
    stop = json.loads(json.dumps(CASES["user_marketing_preferences/resume"]))
    stop["entry"][0]["changes"][0]["value"]["user_preferences"][0]["value"] = "stop"
    [stopped] = parse_webhook(json.dumps(stop).encode())
    assert isinstance(stopped, InboundPreference) and stopped.opted_out


def test_edits_and_deletions() -> None:
    [deleted] = _case("deleted_message/revoke")
    assert isinstance(deleted, InboundEdit) and deleted.deleted
    assert deleted.external_id == "<ORIGINAL_WHATSAPP_MESSAGE_ID>"
    [edited] = _case("edited_message/image")
    assert isinstance(edited, InboundEdit) and not edited.deleted
    assert edited.text == "Updated image caption"
    assert edited.external_id.startswith("wamid.HBgLMTQxMjU1NTA4MjkV")


@pytest.mark.parametrize(
    "prefix",
    [
        "account_update/",
        "call_connect/",
        "call_status/",
        "call_terminate/",
        "system/",
        "template_",
        "outgoing_message/",
    ],
)
def test_other_fields_are_ignored(prefix: str) -> None:
    names = [n for n in CASES if n.startswith(prefix)]
    if not names:
        pytest.skip(f"fixtures not found at {WHATSAPP}")
    for name in names:
        assert _case(name) == [], name


def test_messages_and_statuses_from_different_entry_ids_are_all_kept() -> None:
    message, status = CASES.get("message/text"), CASES.get("message_status/sent")
    if message is None or status is None:
        pytest.skip(f"fixtures not found at {WHATSAPP}")
    assert message["entry"][0]["id"] != status["entry"][0]["id"]
    both = {"object": "whatsapp_business_account", "entry": message["entry"] + status["entry"]}
    kinds = [type(u) for u in parse_webhook(json.dumps(both).encode())]
    assert kinds == [InboundMessage, InboundStatus]


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"entry": 5}', b'{"entry": [{"changes": [null]}]}']
)
def test_garbage_gives_nothing(body: bytes) -> None:
    assert parse_webhook(body) == []


def test_a_malformed_message_is_skipped_not_raised() -> None:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messages": [
                                {"type": "text", "text": {"body": "no id or sender"}},
                                {"from": "1", "id": "wamid.ok", "timestamp": "1", "type": "text"},
                            ],
                            "statuses": [{"id": "wamid.x", "status": "sent"}],
                        },
                    }
                ],
            }
        ],
    }
    updates = parse_webhook(json.dumps(body).encode())
    assert [u.external_id for u in updates if isinstance(u, InboundMessage)] == ["wamid.ok"]
