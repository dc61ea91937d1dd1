"""The unified inbox: conversations, their messages, sending, and the team's actions on them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, UploadFile, status
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import BigId, Id, ListOut, PageLimit, StrictModel
from crm.messaging import Button, ChannelKind, OutboundKind
from crm.models import Conversation, ConversationStatus, Message
from crm.services.inbox import conversations
from crm.services.inbox.conversations import effective_status
from crm.services.inbox.media import MAX_UPLOAD, access_upload, do_upload
from crm.services.inbox.outbound import MAX_TEXT, Outgoing, do_send_message

router = APIRouter(tags=["inbox"])

ConversationId = Id


class ConversationOut(BaseModel):
    id: int
    contact_id: int
    connection_id: int
    channel: str
    status: str
    assignee_id: int | None
    unread_count: int
    snoozed_until: dt.datetime | None
    last_inbound_at: dt.datetime | None
    last_message_at: dt.datetime
    last_message_preview: str
    business_connection_id: str | None
    created_at: dt.datetime


class MessageOut(BaseModel):
    id: int
    conversation_id: int
    direction: str
    kind: str
    text: str
    status: str
    error_code: int | None
    error_title: str | None
    media: dict[str, Any] | None
    payload: dict[str, Any]
    author_type: str
    author_user_id: int | None
    reply_to_id: int | None
    external_id: str | None
    edited: bool
    deleted: bool
    created_at: dt.datetime
    provider_at: dt.datetime | None


class TemplateIn(StrictModel):
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(default="en_US", min_length=2, max_length=16)
    params: list[Annotated[str, Field(max_length=1024)]] = Field(default_factory=list)


class ButtonIn(StrictModel):
    id: str = Field(min_length=1, max_length=256)
    title: str = Field(min_length=1, max_length=20)


class SendIn(StrictModel):
    text: str = Field(default="", max_length=MAX_TEXT)
    kind: Literal["text", "image", "document", "audio", "voice", "video", "template", "buttons"] = (
        "text"
    )
    media_key: str | None = Field(default=None, max_length=300, description="from POST /media")
    filename: str | None = Field(default=None, max_length=200)
    template: TemplateIn | None = None
    buttons: list[ButtonIn] = Field(default_factory=list, max_length=3)
    reply_to_message_id: BigId | None = None
    marketing: bool = False
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class NoteIn(StrictModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class AssignIn(StrictModel):
    assignee_id: Id | None


class SnoozeIn(StrictModel):
    until: dt.datetime


class MediaOut(BaseModel):
    media_key: str
    filename: str
    mime_type: str | None
    size: int


def conversation_out(conversation: Conversation) -> ConversationOut:
    """The API view of a conversation."""
    return ConversationOut(
        id=conversation.id,
        contact_id=conversation.contact_id,
        connection_id=conversation.connection_id,
        channel=conversation.channel.value,
        status=effective_status(conversation),
        assignee_id=conversation.assignee_id,
        unread_count=conversation.unread_count,
        snoozed_until=conversation.snoozed_until,
        last_inbound_at=conversation.last_inbound_at,
        last_message_at=conversation.last_message_at,
        last_message_preview=conversation.last_message_preview,
        business_connection_id=conversation.business_connection_id or None,
        created_at=conversation.created_at,
    )


def message_out(message: Message) -> MessageOut:
    """The API view of a message."""
    media = dict(message.media) if message.media else None
    return MessageOut(
        id=message.id,
        conversation_id=message.conversation_id,
        direction=message.direction.value,
        kind=message.kind.value,
        text=message.text,
        status=message.status.value,
        error_code=message.error_code,
        error_title=message.error_title,
        media=media,
        payload=dict(message.payload),
        author_type=message.author_type.value,
        author_user_id=message.author_user_id,
        reply_to_id=message.reply_to_id,
        external_id=message.external_id,
        edited=message.edited,
        deleted=message.deleted,
        created_at=message.created_at,
        provider_at=message.provider_at,
    )


@router.get("/conversations", response_model=ListOut[ConversationOut])
async def get_conversations(
    actor: ActorDep,
    unread: bool | None = None,
    assignee_id: Id | None = None,
    unassigned: bool = False,
    channel: ChannelKind | None = None,
    status: ConversationStatus | None = None,
    contact_id: Id | None = None,
    sort: Annotated[str, Query(description="last_message_at or created_at, - for newest")] = (
        "-last_message_at"
    ),
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[ConversationOut]:
    """The unified inbox, most recent activity first."""
    page = await conversations.list_conversations(
        actor,
        unread=unread,
        assignee_id=assignee_id,
        unassigned=unassigned,
        channel=channel,
        status=status,
        contact_id=contact_id,
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return ListOut(items=[conversation_out(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(conversation_id: ConversationId, actor: ActorDep) -> ConversationOut:
    """One conversation."""
    return conversation_out(await conversations.access_conversation(actor, conversation_id))


@router.get("/conversations/{conversation_id}/messages", response_model=ListOut[MessageOut])
async def get_messages(
    conversation_id: ConversationId,
    actor: ActorDep,
    order: Literal["newest", "oldest"] = "newest",
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[MessageOut]:
    """Messages and private notes of a conversation, newest first by default."""
    page = await conversations.list_messages(
        actor, conversation_id, cursor=cursor, limit=limit, newest_first=order == "newest"
    )
    return ListOut(items=[message_out(m) for m in page.items], next_cursor=page.next_cursor)


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=MessageOut,
    status_code=status.HTTP_202_ACCEPTED,
)
async def post_message(
    conversation_id: ConversationId, body: SendIn, actor: ActorDep, request: Request
) -> MessageOut:
    """Send a message to the lead: queued now, delivered by a worker (202).

    409 when the lead opted out or WhatsApp's 24-hour window is closed (``code`` says which).
    """
    media = None
    if body.media_key is not None:
        media = access_upload(actor, request.app.state.media_store, body.media_key, body.filename)
    template = body.template
    outgoing = Outgoing(
        text=body.text,
        kind=OutboundKind(body.kind),
        media=media,
        template_name=template.name if template else None,
        template_language=template.language if template else None,
        template_params=tuple(template.params) if template else (),
        buttons=tuple(Button(id=b.id, title=b.title) for b in body.buttons),
        reply_to_message_id=body.reply_to_message_id,
        marketing=body.marketing,
        idempotency_key=body.idempotency_key,
    )
    return message_out(await do_send_message(actor, conversation_id, outgoing))


@router.post("/media", response_model=MediaOut, status_code=status.HTTP_201_CREATED)
async def post_media(file: UploadFile, actor: ActorDep, request: Request) -> MediaOut:
    """Upload an attachment to send later (field ``file``, at most 16 MiB)."""
    data = await file.read(MAX_UPLOAD + 1)
    name = file.filename or "upload"
    key = await do_upload(actor, request.app.state.media_store, name, data)
    return MediaOut(media_key=key, filename=name, mime_type=file.content_type, size=len(data))


@router.post("/conversations/{conversation_id}/read", response_model=ConversationOut)
async def post_read(conversation_id: ConversationId, actor: ActorDep) -> ConversationOut:
    """Mark the lead's messages as read by the team."""
    return conversation_out(await conversations.do_mark_read(actor, conversation_id))


@router.post("/conversations/{conversation_id}/assign", response_model=ConversationOut)
async def post_assign(
    conversation_id: ConversationId, body: AssignIn, actor: ActorDep
) -> ConversationOut:
    """Assign the conversation to a member, or to nobody with null."""
    return conversation_out(await conversations.do_assign(actor, conversation_id, body.assignee_id))


@router.post("/conversations/{conversation_id}/snooze", response_model=ConversationOut)
async def post_snooze(
    conversation_id: ConversationId, body: SnoozeIn, actor: ActorDep
) -> ConversationOut:
    """Hide the conversation until a time; the lead writing wakes it earlier."""
    return conversation_out(await conversations.do_snooze(actor, conversation_id, body.until))


@router.post("/conversations/{conversation_id}/close", response_model=ConversationOut)
async def post_close(conversation_id: ConversationId, actor: ActorDep) -> ConversationOut:
    """Close the conversation; the lead writing again reopens it."""
    return conversation_out(
        await conversations.do_set_status(actor, conversation_id, ConversationStatus.CLOSED)
    )


@router.post("/conversations/{conversation_id}/reopen", response_model=ConversationOut)
async def post_reopen(conversation_id: ConversationId, actor: ActorDep) -> ConversationOut:
    """Open a closed or snoozed conversation again."""
    return conversation_out(
        await conversations.do_set_status(actor, conversation_id, ConversationStatus.OPEN)
    )


@router.post(
    "/conversations/{conversation_id}/notes",
    response_model=MessageOut,
    status_code=status.HTTP_201_CREATED,
)
async def post_private_note(
    conversation_id: ConversationId, body: NoteIn, actor: ActorDep
) -> MessageOut:
    """A private note for the team inside the conversation."""
    return message_out(await conversations.do_add_private_note(actor, conversation_id, body.text))


@router.get("/messages/search", response_model=ListOut[MessageOut])
async def get_message_search(
    actor: ActorDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    conversation_id: Id | None = None,
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[MessageOut]:
    """Messages whose text contains ``q``, newest first."""
    page = await conversations.search_messages(
        actor, q, conversation_id=conversation_id, cursor=cursor, limit=limit
    )
    return ListOut(items=[message_out(m) for m in page.items], next_cursor=page.next_cursor)
