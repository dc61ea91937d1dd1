"""Contacts in the operator bot, end to end through the sandbox Telegram emulator.

``/contacts`` search and pages, contact cards, the tag and note dialogues, ``/newcontact`` and
inline mode, with the role rules of the crm services and one Russian check per feature.
"""

from __future__ import annotations

from typing import Any

from crm.models import Contact, Note, Role, Tag, User
from crm.services.access import Actor
from crm.services.contacts import companies, contacts, notes
from crm.services.pipeline import deals
from tests.support.bot import (
    OPERATOR,
    buttons,
    count,
    invite_link,
    join,
    lead_received,
    lead_writes,
    next_message,
    onboard_owner,
    press,
    say,
    sent,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 6101
VIEWER = 6102
MEMBER = 6103
OTHER_OWNER = 6104
STRANGER = 6105
RU_OWNER = 6106


async def onboard_ru_owner(service: RunningService, user_id: int) -> User:
    """An owner whose Telegram speaks Russian: the bot answers in Russian."""
    await say(service, user_id, "/start", first_name="Ольга", language_code="ru")

    async def registered() -> bool:
        user = await User.get_or_none(telegram_id=user_id)
        return user is not None and user.current_tenant_id is not None

    await eventually(registered)
    return await User.get(telegram_id=user_id)


def owner_of(user: User) -> Actor:
    assert user.current_tenant_id is not None
    return Actor(tenant_id=user.current_tenant_id, user_id=user.id, role=Role.OWNER)


async def add_contact(actor: Actor, **values: Any) -> Contact:
    return (await contacts.do_create_contact(actor, values)).contact


async def callback_answer(service: RunningService, callback_query_id: str) -> dict[str, Any]:
    """The answer the bot gave to one button press."""
    found: list[dict[str, Any]] = []

    async def answered() -> bool:
        reply = await service.http.get(
            "/sandbox/telegram/callback_answers", params={"connection_id": OPERATOR}
        )
        found[:] = [a for a in reply.json() if a["callback_query_id"] == callback_query_id]
        return bool(found)

    await eventually(answered)
    return found[0]


async def inline(service: RunningService, user_id: int, query: str, **extra: Any) -> dict[str, Any]:
    """A Telegram user types ``@bot query`` in a chat; returns the bot's answer."""
    reply = await service.http.post(
        "/sandbox/telegram/updates",
        json={"connection_id": OPERATOR, "from_user_id": user_id, "inline_query": query} | extra,
    )
    assert reply.status_code == 200, reply.text
    query_id = reply.json()["inline_query_id"]
    found: list[dict[str, Any]] = []

    async def answered() -> bool:
        state = await service.http.get(
            "/sandbox/telegram/state", params={"connection_id": OPERATOR}
        )
        found[:] = [a for a in state.json()["inline_answers"] if a["inline_query_id"] == query_id]
        return bool(found)

    await eventually(answered)
    return found[0]


# ---- /contacts -----------------------------------------------------------------------------


async def test_search_by_name_and_by_phone(service: RunningService) -> None:
    owner = owner_of(await onboard_owner(service, OWNER, "Olga"))
    anna = await add_contact(
        owner, name="Anna Petrova", phone="+4915112345678", email="anna@example.com"
    )
    boris = await add_contact(owner, name="Boris Ivanov", phone="+4915199999999")

    before = await count(service, OWNER)
    await say(service, OWNER, "/contacts anna")
    found = await next_message(service, OWNER, before, "Contacts matching “anna”")
    assert buttons(found) == [f"ct:{anna.id}"]
    assert "Anna Petrova · +4915112345678" in str(found["reply_markup"])

    before = await count(service, OWNER)
    await say(service, OWNER, "/contacts +49 151 99")
    found = await next_message(service, OWNER, before, "Contacts matching")
    assert buttons(found) == [f"ct:{boris.id}"]

    before = await count(service, OWNER)
    await say(service, OWNER, "/contacts nobody-like-this")
    await next_message(service, OWNER, before, "No contact matches “nobody-like-this”")


async def test_search_answers_in_russian(service: RunningService) -> None:
    owner = owner_of(await onboard_ru_owner(service, RU_OWNER))
    await add_contact(owner, name="Anna Petrova")
    before = await count(service, RU_OWNER)
    await say(service, RU_OWNER, "/contacts anna")
    found = await next_message(service, RU_OWNER, before, "Контакты по запросу «anna»:")
    assert len(buttons(found)) == 1


async def test_recent_contacts_are_paged(service: RunningService) -> None:
    owner = owner_of(await onboard_owner(service, OWNER, "Olga"))
    created = [await add_contact(owner, name=f"Lead {i:02d}") for i in range(12)]

    before = await count(service, OWNER)
    await say(service, OWNER, "/contacts")
    listing = await next_message(service, OWNER, before, "12 contacts in this workspace")
    newest_first = [f"ct:{c.id}" for c in reversed(created)]
    assert buttons(listing) == [*newest_first[:10], "cp:1", "cp:2"]
    labels = [b["text"] for b in listing["reply_markup"]["inline_keyboard"][-1]]
    assert labels == ["page 1/2", "▶️"]

    await press(service, OWNER, "cp:2", listing["message_id"])

    async def turned() -> bool:
        current = [
            m for m in await sent(service, OWNER) if m["message_id"] == listing["message_id"]
        ]
        return buttons(current[0]) == [*newest_first[10:], "cp:1", "cp:2"]

    await eventually(turned)
    (page_two,) = [
        m for m in await sent(service, OWNER) if m["message_id"] == listing["message_id"]
    ]
    labels = [b["text"] for b in page_two["reply_markup"]["inline_keyboard"][-1]]
    assert labels == ["◀️", "page 2/2"]


# ---- cards ---------------------------------------------------------------------------------


async def test_card_shows_the_contact_its_notes_and_deals(service: RunningService) -> None:
    user = await onboard_owner(service, OWNER, "Olga")
    owner = owner_of(user)
    company = await companies.do_create_company(owner, "Acme & Sons")
    anna = await add_contact(
        owner,
        name="Anna <Petrova>",
        phone="+4915112345678",
        email="anna@example.com",
        telegram_username="anna_p",
        company_id=company.id,
        tags=["vip"],
    )
    for i in range(4):
        await notes.do_create_note(owner, f"note number {i} <b>", contact_id=anna.id)
    deal = await deals.do_create_deal(owner, "Website <redesign>", contact_id=anna.id)

    before = await count(service, OWNER)
    await say(service, OWNER, "/contacts petrova")
    listing = await next_message(service, OWNER, before, "Contacts matching")
    before = await count(service, OWNER)
    await press(service, OWNER, f"ct:{anna.id}", listing["message_id"])
    card = await next_message(service, OWNER, before, "Anna &lt;Petrova&gt;")

    text = card["text"]
    assert card["parse_mode"] == "HTML"
    assert "👤 <b>Anna &lt;Petrova&gt;</b>" in text
    assert "Phone: +4915112345678" in text
    assert "Email: anna@example.com" in text
    assert "Telegram: @anna_p" in text
    assert "Company: Acme &amp; Sons" in text
    assert "Owner: Olga" in text
    assert "Tags: vip" in text
    # The three latest notes, newest first; the oldest stays out.
    assert "note number 3 &lt;b&gt;" in text and "note number 1 &lt;b&gt;" in text
    assert "note number 0" not in text
    assert text.index("note number 3") < text.index("note number 1")
    assert "• Website &lt;redesign&gt;: Cold" in text
    assert buttons(card) == [f"dl:{deal.id}", f"ca:t:{anna.id}", f"ca:n:{anna.id}"]


async def test_card_in_russian(service: RunningService) -> None:
    owner = owner_of(await onboard_ru_owner(service, RU_OWNER))
    anna = await add_contact(owner, name="Anna", phone="+4915112345678")
    before = await count(service, RU_OWNER)
    await say(service, RU_OWNER, "/contacts anna")
    listing = await next_message(service, RU_OWNER, before, "anna")
    before = await count(service, RU_OWNER)
    await press(service, RU_OWNER, f"ct:{anna.id}", listing["message_id"])
    card = await next_message(service, RU_OWNER, before, "Телефон: +4915112345678")
    assert "Сделок пока нет." in card["text"]
    labels = [b["text"] for row in card["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["🏷 Добавить тег", "📝 Добавить заметку"]


async def test_only_contacts_of_the_current_workspace_are_listed_and_opened(
    service: RunningService,
) -> None:
    mine = owner_of(await onboard_owner(service, OWNER, "Olga"))
    theirs = owner_of(await onboard_owner(service, OTHER_OWNER, "Oleg"))
    anna = await add_contact(mine, name="Anna Petrova")
    await add_contact(theirs, name="Anna Other")

    before = await count(service, OWNER)
    await say(service, OWNER, "/contacts anna")
    listing = await next_message(service, OWNER, before, "Contacts matching")
    assert buttons(listing) == [f"ct:{anna.id}"]

    # Olga joins Oleg's workspace, which becomes her current one: her old list now points
    # at a contact of another workspace.
    await join(service, OWNER, "Olga", await invite_link(service, OTHER_OWNER, "member"))
    pressed = await press(service, OWNER, f"ct:{anna.id}", listing["message_id"])
    answer = await callback_answer(service, pressed["callback_query_id"])
    assert answer["text"] == "This contact is not in your current workspace."
    before = await count(service, OWNER)
    await say(service, OWNER, "/contacts")
    listing = await next_message(service, OWNER, before, "1 contact in this workspace")
    assert "Anna Other" in str(listing["reply_markup"])


# ---- tag and note dialogues ----------------------------------------------------------------


async def open_card(service: RunningService, user_id: int, contact: Contact) -> dict[str, Any]:
    before = await count(service, user_id)
    await say(service, user_id, f"/contacts {contact.name}")
    listing = await next_message(service, user_id, before, "“")
    before = await count(service, user_id)
    await press(service, user_id, f"ct:{contact.id}", listing["message_id"])
    return await next_message(service, user_id, before, "Phone:")


async def test_tag_and_note_dialogues(service: RunningService) -> None:
    user = await onboard_owner(service, OWNER, "Olga")
    anna = await add_contact(owner_of(user), name="Anna Petrova")
    card = await open_card(service, OWNER, anna)

    before = await count(service, OWNER)
    await press(service, OWNER, f"ca:t:{anna.id}", card["message_id"])
    await next_message(service, OWNER, before, "Which tag for Anna Petrova?")
    before = await count(service, OWNER)
    await say(service, OWNER, "vip, hot lead")
    await next_message(service, OWNER, before, "Tags of the contact: hot lead, vip")
    card = await next_message(service, OWNER, before, "Tags: hot lead, vip")
    tagged = await Tag.filter(contacts__id=anna.id).values_list("name", flat=True)
    assert sorted(tagged) == ["hot lead", "vip"]

    before = await count(service, OWNER)
    await press(service, OWNER, f"ca:n:{anna.id}", card["message_id"])
    await next_message(service, OWNER, before, "Write the note on Anna Petrova")
    before = await count(service, OWNER)
    await say(service, OWNER, "Called <her>, wants a demo")
    await next_message(service, OWNER, before, "Note saved.")
    card = await next_message(service, OWNER, before, "Called &lt;her&gt;, wants a demo")
    (note,) = await Note.filter(contact_id=anna.id)
    assert note.body == "Called <her>, wants a demo" and note.author_id == user.id

    # /cancel leaves the dialogue: the next text is no note.
    before = await count(service, OWNER)
    await press(service, OWNER, f"ca:n:{anna.id}", card["message_id"])
    await next_message(service, OWNER, before, "Write the note")
    await say(service, OWNER, "/cancel")
    await next_message(service, OWNER, before, "Cancelled.")
    await say(service, OWNER, "not a note")
    await next_message(service, OWNER, before, "To answer a lead, reply to their notification")
    assert await Note.filter(contact_id=anna.id).count() == 1


async def test_a_reply_to_a_lead_notification_during_a_dialogue_reaches_the_lead(
    service: RunningService,
) -> None:
    user = await onboard_owner(service, OWNER, "Olga")
    anna = await add_contact(owner_of(user), name="Anna Petrova")
    card = await open_card(service, OWNER, anna)
    before = await count(service, OWNER)
    await press(service, OWNER, f"ca:n:{anna.id}", card["message_id"])
    await next_message(service, OWNER, before, "Write the note")

    await lead_writes(
        service, await whatsapp_connection(user.current_tenant_id or 0), "Lead", "price?"
    )
    notification = await next_message(service, OWNER, before, "price?")
    await say(service, OWNER, "49 EUR", reply_to_message_id=notification["message_id"])

    async def delivered() -> bool:
        return await lead_received(service) == ["49 EUR"]

    await eventually(delivered)
    assert await Note.filter(contact_id=anna.id).count() == 0
    # The dialogue still waits for its note.
    before = await count(service, OWNER)
    await say(service, OWNER, "Asked for the price")
    await next_message(service, OWNER, before, "Note saved.")
    assert await Note.filter(contact_id=anna.id).count() == 1


async def test_tag_dialogue_in_russian(service: RunningService) -> None:
    anna = await add_contact(owner_of(await onboard_ru_owner(service, RU_OWNER)), name="Anna")
    before = await count(service, RU_OWNER)
    await say(service, RU_OWNER, "/contacts anna")
    listing = await next_message(service, RU_OWNER, before, "anna")
    before = await count(service, RU_OWNER)
    await press(service, RU_OWNER, f"ct:{anna.id}", listing["message_id"])
    card = await next_message(service, RU_OWNER, before, "Телефон:")
    before = await count(service, RU_OWNER)
    await press(service, RU_OWNER, f"ca:t:{anna.id}", card["message_id"])
    await next_message(service, RU_OWNER, before, "Какой тег добавить контакту Anna?")
    await say(service, RU_OWNER, "vip")
    await next_message(service, RU_OWNER, before, "Теги контакта: vip")


async def test_a_viewer_reads_cards_but_cannot_tag_note_or_add(service: RunningService) -> None:
    user = await onboard_owner(service, OWNER, "Olga")
    anna = await add_contact(owner_of(user), name="Anna Petrova")
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))

    card = await open_card(service, VIEWER, anna)
    for act in ("t", "n"):
        pressed = await press(service, VIEWER, f"ca:{act}:{anna.id}", card["message_id"])
        answer = await callback_answer(service, pressed["callback_query_id"])
        assert answer["text"] == "Viewers cannot add or change contacts."
        assert answer["show_alert"] is True
    # No dialogue was started: the text goes to the inbox's catch-all.
    before = await count(service, VIEWER)
    await say(service, VIEWER, "vip")
    await next_message(service, VIEWER, before, "To answer a lead")

    await say(service, VIEWER, "/newcontact Boris +4915199999999")
    await next_message(service, VIEWER, before, "Viewers cannot add or change contacts.")
    before = await count(service, VIEWER)
    await say(service, VIEWER, "/newcontact")
    await next_message(service, VIEWER, before, "Viewers cannot add or change contacts.")

    assert await Tag.filter(tenant_id=user.current_tenant_id).count() == 0
    assert await Note.filter(tenant_id=user.current_tenant_id).count() == 0
    assert await Contact.filter(tenant_id=user.current_tenant_id).count() == 1


async def test_a_member_may_note_but_not_tag_a_colleagues_contact(
    service: RunningService,
) -> None:
    user = await onboard_owner(service, OWNER, "Olga")
    anna = await add_contact(owner_of(user), name="Anna Petrova")  # owned by Olga
    await join(service, MEMBER, "Mila", await invite_link(service, OWNER, "member"))

    card = await open_card(service, MEMBER, anna)
    pressed = await press(service, MEMBER, f"ca:t:{anna.id}", card["message_id"])
    answer = await callback_answer(service, pressed["callback_query_id"])
    assert answer["text"] == "You may not change this contact: it belongs to another member."

    before = await count(service, MEMBER)
    await press(service, MEMBER, f"ca:n:{anna.id}", card["message_id"])
    await next_message(service, MEMBER, before, "Write the note")
    await say(service, MEMBER, "Met at the fair")
    await next_message(service, MEMBER, before, "Note saved.")
    member = await User.get(telegram_id=MEMBER)
    (note,) = await Note.filter(contact_id=anna.id)
    assert note.author_id == member.id
    assert await Tag.filter(tenant_id=user.current_tenant_id).count() == 0


# ---- /newcontact ---------------------------------------------------------------------------


async def test_quick_add_in_one_line(service: RunningService) -> None:
    user = await onboard_owner(service, OWNER, "Olga")
    before = await count(service, OWNER)
    await say(service, OWNER, "/newcontact Anna Petrova +49 151 12345678 Anna@Example.com")
    await next_message(service, OWNER, before, "Contact added.")
    card = await next_message(service, OWNER, before, "<b>Anna Petrova</b>")
    assert "Phone: +4915112345678" in card["text"]
    assert "Email: anna@example.com" in card["text"]
    assert "Owner: Olga" in card["text"]
    contact = await Contact.get(tenant_id=user.current_tenant_id)
    assert (contact.name, contact.phone, contact.email, contact.owner_id) == (
        "Anna Petrova",
        "+4915112345678",
        "anna@example.com",
        user.id,
    )

    before = await count(service, OWNER)
    await say(service, OWNER, "/newcontact Boris bob@example")
    refused = await next_message(service, OWNER, before, "Not saved.")
    assert refused["text"] == "Not saved. email: 'bob@example' is not a valid email address"

    before = await count(service, OWNER)
    await say(service, OWNER, "/newcontact Clara +4915112345678")
    refused = await next_message(service, OWNER, before, "Not saved.")
    assert "phone: contact" in refused["text"] and "already has this phone" in refused["text"]
    assert await Contact.filter(tenant_id=user.current_tenant_id).count() == 1


async def test_quick_add_by_dialogue(service: RunningService) -> None:
    user = await onboard_owner(service, OWNER, "Olga")
    before = await count(service, OWNER)
    await say(service, OWNER, "/newcontact")
    await next_message(service, OWNER, before, "Name of the new contact?")
    await say(service, OWNER, "Vera Ivanova")
    await next_message(service, OWNER, before, "Their phone number or email?")
    await say(service, OWNER, "vera@bad")
    await next_message(service, OWNER, before, "Not saved. email: 'vera@bad' is not a valid")
    await next_message(service, OWNER, before, "Send another phone number or email")
    assert await Contact.filter(tenant_id=user.current_tenant_id).count() == 0
    await say(service, OWNER, "vera@example.com")
    await next_message(service, OWNER, before, "Contact added.")
    await next_message(service, OWNER, before, "Email: vera@example.com")
    vera = await Contact.get(tenant_id=user.current_tenant_id)
    assert (vera.name, vera.email) == ("Vera Ivanova", "vera@example.com")

    before = await count(service, OWNER)
    await say(service, OWNER, "/newcontact")
    await next_message(service, OWNER, before, "Name of the new contact?")
    await say(service, OWNER, "Max")
    await next_message(service, OWNER, before, "Their phone number or email?")
    await say(service, OWNER, "/skip")
    await next_message(service, OWNER, before, "<b>Max</b>")
    assert await Contact.filter(tenant_id=user.current_tenant_id, name="Max").count() == 1


async def test_quick_add_error_in_russian(service: RunningService) -> None:
    user = await onboard_ru_owner(service, RU_OWNER)
    before = await count(service, RU_OWNER)
    await say(service, RU_OWNER, "/newcontact Boris bob@example")
    refused = await next_message(service, RU_OWNER, before, "Не сохранено.")
    assert refused["text"].startswith("Не сохранено. email: 'bob@example'")
    before = await count(service, RU_OWNER)
    await say(service, RU_OWNER, "/newcontact Boris")
    await next_message(service, RU_OWNER, before, "Контакт добавлен.")
    assert await Contact.filter(tenant_id=user.current_tenant_id).count() == 1


# ---- inline mode ---------------------------------------------------------------------------


async def test_inline_query_lists_contacts_of_the_current_workspace_only(
    service: RunningService,
) -> None:
    mine = owner_of(await onboard_owner(service, OWNER, "Olga"))
    theirs = owner_of(await onboard_owner(service, OTHER_OWNER, "Oleg"))
    anna = await add_contact(mine, name="Anna Petrova", phone="+4915112345678", tags=["vip"])
    await add_contact(mine, name="Boris")
    other_anna = await add_contact(theirs, name="Anna Other", email="anna@other.example")

    answer = await inline(service, OWNER, "anna")
    assert answer["is_personal"] is True
    assert 0 < answer["cache_time"] <= 10
    (result,) = answer["results"]
    assert result["type"] == "article"
    assert result["title"] == "Anna Petrova"
    assert result["description"] == "+4915112345678 · 🏷 vip"
    content = result["input_message_content"]
    assert content["parse_mode"] == "HTML"
    assert content["message_text"] == "👤 <b>Anna Petrova</b>\n📞 +4915112345678"
    assert result["id"] == f"contact-{anna.id}"

    (result,) = (await inline(service, OTHER_OWNER, "anna"))["results"]
    assert result["id"] == f"contact-{other_anna.id}"

    # An empty query lists the recent contacts, still of this workspace only.
    titles = {r["title"] for r in (await inline(service, OWNER, ""))["results"]}
    assert titles == {"Anna Petrova", "Boris"}

    # Olga joins Oleg's workspace, which becomes her current one: now she sees his contacts.
    await join(service, OWNER, "Olga", await invite_link(service, OTHER_OWNER, "member"))
    assert (await User.get(telegram_id=OWNER)).current_tenant_id == theirs.tenant_id
    ids = [r["id"] for r in (await inline(service, OWNER, "anna"))["results"]]
    assert ids == [f"contact-{other_anna.id}"]


async def test_inline_query_of_a_stranger_offers_to_start_the_bot(
    service: RunningService,
) -> None:
    owner = owner_of(await onboard_owner(service, OWNER, "Olga"))
    await add_contact(owner, name="Anna Petrova")

    answer = await inline(service, STRANGER, "anna")
    assert answer["results"] == []
    assert answer["is_personal"] is True
    assert answer["button"] == {
        "text": "Start the bot to search your contacts",
        "start_parameter": "contacts",
    }
    assert await User.get_or_none(telegram_id=STRANGER) is None

    answer = await inline(service, STRANGER + 1, "anna", language_code="ru")
    assert answer["results"] == []
    assert answer["button"]["text"] == "Запустите бота, чтобы искать свои контакты"
