"""CSV import of contacts: formats, encodings, normalization, dedupe, bad rows, audit, tenancy."""

from __future__ import annotations

import io
from typing import Any

import pytest

from crm.errors import PermissionDenied, ValidationFailed
from crm.models import Company, Contact, Event, Note, OutboxEntry, Role, Tenant
from crm.services.accounts.workspaces import do_add_member
from crm.services.contacts.csv_export import export_contacts_csv
from crm.services.contacts.csv_import import ImportResult, count_rows, do_import_contacts
from tests.support.workspace import Workspace


async def run(
    ws: Workspace,
    text: str | bytes,
    encoding: str = "utf-8",
    **options: Any,
) -> ImportResult:
    data = text if isinstance(text, bytes) else text.encode(encoding)
    return await do_import_contacts(ws.actor, io.BytesIO(data), **options)


async def contact(ws: Workspace, **where: Any) -> Contact:
    return await Contact.get(tenant_id=ws.tenant_id, **where).prefetch_related("company", "tags")


async def count(ws: Workspace) -> int:
    return await Contact.filter(tenant_id=ws.tenant_id).count()


def errors(result: ImportResult) -> list[tuple[int, str]]:
    return [(e.row, e.field) for e in result.errors]


async def test_google_contacts_export(workspace: Workspace) -> None:
    csv_text = (
        "Name,Given Name,Family Name,E-mail 1 - Type,E-mail 1 - Value,Phone 1 - Type,"
        "Phone 1 - Value,Organization 1 - Name,Organization 1 - Title,Group Membership,Notes\n"
        ",Ivan,Petrov,* Work,Ivan.Petrov@Example.com ::: ivan@home.example,Mobile,"
        "(415) 555-2671,Acme,CTO,* myContacts ::: Friends ::: VIP,Met at a conference\n"
    )
    result = await run(workspace, csv_text)
    assert (result.created, result.updated, result.skipped, result.errors) == (1, 0, 0, [])
    c = await contact(workspace, email="ivan.petrov@example.com")
    assert c.name == "Ivan Petrov"
    assert c.phone == "+14155552671"
    assert c.title == "CTO"
    assert c.company is not None and c.company.name == "Acme"
    assert sorted(t.name for t in c.tags) == ["Friends", "VIP"]
    assert [n.body for n in await Note.filter(contact_id=c.id)] == ["Met at a conference"]


async def test_new_google_contacts_format(workspace: Workspace) -> None:
    csv_text = (
        "First Name,Middle Name,Last Name,E-mail 1 - Label,E-mail 1 - Value,Phone 1 - Label,"
        "Phone 1 - Value,Organization Name,Organization Title,Labels\n"
        "Anna,,Smith,Work,anna@example.com,Mobile,+44 20 7946 0958,Globex,Buyer,clients\n"
    )
    result = await run(workspace, csv_text)
    assert result.created == 1 and not result.errors
    c = await contact(workspace, email="anna@example.com")
    assert (c.name, c.phone, c.title) == ("Anna Smith", "+442079460958", "Buyer")
    assert [t.name for t in c.tags] == ["clients"]


async def test_hubspot_export(workspace: Workspace) -> None:
    csv_text = (
        "Record ID,First Name,Last Name,Email,Phone Number,Company Name,Job Title,Lead Status\n"
        "101,Maria,Garcia,MARIA@EXAMPLE.ORG,212-555-0199,Initech,Head of Sales,New\n"
    )
    result = await run(workspace, csv_text)
    assert result.created == 1 and not result.errors
    c = await contact(workspace, email="maria@example.org")
    assert (c.name, c.phone, c.title) == ("Maria Garcia", "+12125550199", "Head of Sales")
    assert c.company is not None and c.company.name == "Initech"


async def test_pipedrive_export(workspace: Workspace) -> None:
    csv_text = (
        '"Person - Name","Person - Email","Person - Phone","Organization - Name",'
        '"Person - Labels"\n'
        '"John Brown","john@brown.example","+1 (646) 555-0123","Brown & Sons","hot; partner"\n'
    )
    result = await run(workspace, csv_text)
    assert result.created == 1 and not result.errors
    c = await contact(workspace, email="john@brown.example")
    assert (c.name, c.phone) == ("John Brown", "+16465550123")
    assert c.company is not None and c.company.name == "Brown & Sons"
    assert sorted(t.name for t in c.tags) == ["hot", "partner"]


async def test_linkedin_export_with_its_notes_preamble(workspace: Workspace) -> None:
    csv_text = (
        "Notes:\n"
        '"When exporting your connection data, you may notice that some of the email '
        'addresses are missing."\n'
        "\n"
        "First Name,Last Name,URL,Email Address,Company,Position,Connected On\n"
        "Li,Chen,https://www.linkedin.com/in/lichen,li@chen.example,Umbrella,CEO,01 Jan 2024\n"
        "Emma,Rossi,https://www.linkedin.com/in/emmarossi,,Stark,CFO,02 Jan 2024\n"
    )
    result = await run(workspace, csv_text)
    assert result.created == 1
    # Rows count from the first line of the file; LinkedIn's header is on line 4.
    assert [(e.row, e.field, e.reason) for e in result.errors] == [
        (6, "identifier", "no identifier")
    ]
    c = await contact(workspace, email="li@chen.example")
    assert (c.name, c.title) == ("Li Chen", "CEO")
    assert c.custom_fields == {"linkedin_url": "https://www.linkedin.com/in/lichen"}


async def test_russian_headers_in_cp1251_with_semicolons(workspace: Workspace) -> None:
    await Tenant.filter(id=workspace.tenant_id).update(default_region="RU")
    csv_text = (
        "ФИО;Телефон;Эл. почта;Компания;Должность;Телеграм;Теги;Комментарий;Источник\n"
        "Иванов Иван;8 (916) 123-45-67;ivanov@пример.рф;ООО Ромашка;Директор;@Ivanov_I;"
        "клиент, опт;Позвонить в среду;выставка\n"
        "Петрова Анна;+7 916 765 43 21;;ООО Ромашка;;;;;\n"
    )
    result = await run(workspace, csv_text, encoding="cp1251")
    assert (result.created, result.errors) == (2, [])
    c = await contact(workspace, phone="+79161234567")
    assert c.name == "Иванов Иван"
    assert c.email == "ivanov@пример.рф"
    assert c.telegram_username == "ivanov_i"
    assert (c.title, c.source) == ("Директор", "выставка")
    assert sorted(t.name for t in c.tags) == ["клиент", "опт"]
    assert [n.body for n in await Note.filter(contact_id=c.id)] == ["Позвонить в среду"]
    other = await contact(workspace, phone="+79167654321")
    assert other.company_id == c.company_id  # one company, found again by name
    assert await Company.filter(tenant_id=workspace.tenant_id).count() == 1


async def test_russian_first_and_last_name_columns_are_joined(workspace: Workspace) -> None:
    csv_text = "Имя,Фамилия,Почта\nОльга,Кузнецова,olga@example.com\n"
    result = await run(workspace, csv_text)
    assert result.created == 1
    assert (await contact(workspace, email="olga@example.com")).name == "Ольга Кузнецова"


async def test_utf8_with_bom_and_tabs(workspace: Workspace) -> None:
    csv_text = (
        "\ufeffName\tEmail\tWhatsApp\tTimezone\n"
        "София Берг\tsofia@example.com\t+49 151 2345 6789\tEurope/Berlin\n"
    )
    result = await run(workspace, csv_text)
    assert (result.created, result.errors) == (1, [])
    c = await contact(workspace, email="sofia@example.com")
    assert (c.name, c.whatsapp_id, c.timezone) == ("София Берг", "4915123456789", "Europe/Berlin")


async def test_utf16_excel_unicode_text(workspace: Workspace) -> None:
    csv_text = "Name\tEmail\nÉlodie\telodie@example.fr\n"
    result = await run(workspace, csv_text, encoding="utf-16")
    assert result.created == 1
    assert (await contact(workspace, email="elodie@example.fr")).name == "Élodie"


async def test_headers_are_case_insensitive_and_trimmed(workspace: Workspace) -> None:
    result = await run(workspace, "  NAME , e-MAIL  \nBob,bob@example.com\n")
    assert result.created == 1
    assert (await contact(workspace, email="bob@example.com")).name == "Bob"


async def test_companies_are_found_or_created_case_insensitively(workspace: Workspace) -> None:
    existing = await Company.create(tenant_id=workspace.tenant_id, name="Acme", name_key="acme")
    csv_text = (
        "email,company\n"
        "a@example.com,ACME\n"
        "b@example.com, acme \n"
        "c@example.com,Globex\n"
        "d@example.com,GLOBEX\n"
    )
    result = await run(workspace, csv_text)
    assert result.created == 4
    companies = await Company.filter(tenant_id=workspace.tenant_id).order_by("id")
    assert [c.name for c in companies] == ["Acme", "Globex"]
    a = await contact(workspace, email="a@example.com")
    b = await contact(workspace, email="b@example.com")
    assert a.company_id == b.company_id == existing.id
    d = await contact(workspace, email="d@example.com")
    assert d.company_id == companies[1].id


async def test_phones_become_e164_with_the_tenant_region(workspace: Workspace) -> None:
    await Tenant.filter(id=workspace.tenant_id).update(default_region="DE")
    csv_text = (
        "name,phone\n"
        "Berlin,030 12345678\n"
        "Mobile,0151 23456789\n"
        "US,+1 415 555 2671\n"
        "Intl,0044 20 7946 0958\n"
    )
    result = await run(workspace, csv_text)
    assert (result.created, result.errors) == (4, [])
    phones = set(
        await Contact.filter(tenant_id=workspace.tenant_id).values_list("phone", flat=True)
    )
    assert phones == {"+493012345678", "+4915123456789", "+14155552671", "+442079460958"}


async def test_bad_rows_are_reported_with_row_and_field_while_good_rows_import(
    workspace: Workspace,
) -> None:
    csv_text = (
        "name,email,phone,notes\n"  # row 1
        "Good One,good1@example.com,,\n"  # row 2
        "Bad Email,not-an-email,,\n"  # row 3
        'Multi Line,good2@example.com,,"line one\nline two"\n'  # row 4 (two lines, one record)
        "Bad Phone,,12345,\n"  # row 5
        "Nobody,,,just a note\n"  # row 6
        "Letters,,call me maybe,\n"  # row 7
        "Both Bad,x@,999,\n"  # row 8
        "Good Two,,+1 212 555 0100,\n"  # row 9
    )
    result = await run(workspace, csv_text)
    assert result.created == 3
    assert errors(result) == [
        (3, "email"),
        (5, "phone"),
        (6, "identifier"),
        (7, "phone"),
        (8, "email"),
        (8, "phone"),
    ]
    by_row = {(e.row, e.field): e.reason for e in result.errors}
    assert "not-an-email" in by_row[(3, "email")]
    assert by_row[(6, "identifier")] == "no identifier"
    assert await count(workspace) == 3
    assert not await Contact.filter(name__in=["Bad Email", "Bad Phone", "Nobody"]).exists()


async def test_other_invalid_values_reject_the_row(workspace: Workspace) -> None:
    csv_text = (
        "name,email,telegram,telegram id,whatsapp,timezone,consent\n"
        "A,a@example.com,a b,,,,\n"
        "B,b@example.com,,12ab,,,\n"
        "C,c@example.com,,,abc,,\n"
        "D,d@example.com,,,,Mars/Base,\n"
        "E,e@example.com,,,,,maybe\n"
        f"{'F' * 201},f@example.com,,,,,\n"
        "G,g@example.com,@good_name,42,+1 415 555 2671,Asia/Tokyo,opted_out\n"
    )
    result = await run(workspace, csv_text)
    # A bad identifier beside a valid email only loses that field (a warning); other bad
    # values still reject the row.
    assert (result.created, result.rejected, result.warned) == (4, 3, 3)
    assert [(e.row, e.field, e.level) for e in result.errors] == [
        (2, "telegram_username", "warning"),
        (3, "telegram_id", "warning"),
        (4, "whatsapp_id", "warning"),
        (5, "timezone", "error"),
        (6, "consent", "error"),
        (7, "name", "error"),
    ]
    g = await contact(workspace, email="g@example.com")
    assert (g.telegram_username, g.telegram_id, g.whatsapp_id) == ("good_name", 42, "14155552671")
    assert g.consent == "opted_out" and g.opted_out_at is not None


async def test_duplicates_within_the_file_are_merged(workspace: Workspace) -> None:
    csv_text = (
        "name,email,phone,title,tags\n"
        "Ann,ann@example.com,,,a\n"
        "Ann Again,ANN@example.com,+1 212 555 0101,CEO,b\n"  # same email: fills phone, title
        "Ann Third,,(212) 555-0101,,\n"  # same phone, adds nothing
        "@ann,,,,\n"
    )
    result = await run(workspace, csv_text)
    assert (result.created, result.updated, result.skipped) == (1, 1, 1)
    assert errors(result) == [(5, "identifier")]
    c = await contact(workspace, email="ann@example.com")
    assert (c.name, c.phone, c.title) == ("Ann", "+12125550101", "CEO")
    assert sorted(t.name for t in c.tags) == ["a", "b"]


async def test_duplicates_of_stored_contacts_fill_only_empty_fields(workspace: Workspace) -> None:
    stored = await Contact.create(
        tenant_id=workspace.tenant_id, name="", title="Founder", email="kim@example.com"
    )
    csv_text = (
        "name,email,title,phone,telegram\n"
        "Kim Lee,Kim@Example.com,CTO,+1 212 555 0102,@KimLee\n"  # fills name, phone, tg
        "Kim Lee,kim@example.com,CTO,,\n"  # nothing left to fill
        "Other,,,,kimlee\n"  # same telegram username: same person, nothing new
    )
    result = await run(workspace, csv_text)
    assert (result.created, result.updated, result.skipped) == (0, 1, 2)
    c = await contact(workspace, id=stored.id)
    assert (c.name, c.title, c.phone, c.telegram_username) == (
        "Kim Lee",
        "Founder",
        "+12125550102",
        "kimlee",
    )
    assert c.search_text == "kim lee kim@example.com 12125550102 @kimlee"
    assert await count(workspace) == 1


async def test_overwrite_replaces_fields_that_are_set(workspace: Workspace) -> None:
    await Contact.create(
        tenant_id=workspace.tenant_id, name="Old Name", title="Founder", email="kim@example.com"
    )
    csv_text = "name,email,title\nNew Name,kim@example.com,CTO\nNew Name,kim@example.com,\n"
    result = await run(workspace, csv_text, overwrite=True)
    assert (result.created, result.updated, result.skipped) == (0, 1, 1)
    c = await contact(workspace, email="kim@example.com")
    assert (c.name, c.title) == ("New Name", "CTO")  # an empty cell never erases


async def test_overwrite_can_move_identifiers_between_contacts(workspace: Workspace) -> None:
    a = await Contact.create(
        tenant_id=workspace.tenant_id, email="a@example.com", phone="+12125550001"
    )
    b = await Contact.create(
        tenant_id=workspace.tenant_id, email="b@example.com", phone="+12125550002"
    )
    csv_text = (
        "email,phone\n"
        "a@example.com,+1 212 555 0003\n"  # a gives up ...0001
        "b@example.com,+1 212 555 0001\n"  # and b takes it over
        "c@example.com,+1 212 555 0002\n"  # c takes b's old number
    )
    result = await run(workspace, csv_text, overwrite=True)
    assert (result.created, result.updated, result.errors) == (1, 2, [])
    assert (await contact(workspace, id=a.id)).phone == "+12125550003"
    assert (await contact(workspace, id=b.id)).phone == "+12125550001"
    assert (await contact(workspace, email="c@example.com")).phone == "+12125550002"


async def test_a_row_matching_two_different_contacts_is_rejected(workspace: Workspace) -> None:
    await Contact.create(tenant_id=workspace.tenant_id, email="a@example.com")
    await Contact.create(tenant_id=workspace.tenant_id, phone="+12125550002")
    result = await run(workspace, "email,phone,title\na@example.com,+1 212 555 0002,CEO\n")
    assert (result.created, result.updated) == (0, 0)
    assert errors(result) == [(2, "phone")]


async def test_dedupe_works_across_batches(workspace: Workspace) -> None:
    rows = [f"p{i}@example.com,+1 212 555 {i:04d}" for i in range(7)]
    rows += ["P3@EXAMPLE.COM,", ",(212) 555-0005", "p6@example.com,+1 212 555 0006"]
    csv_text = "email,phone\n" + "\n".join(rows) + "\n"
    result = await run(workspace, csv_text, batch_size=3)
    assert (result.created, result.updated, result.skipped) == (7, 0, 3)
    assert await count(workspace) == 7


async def test_dry_run_reports_the_same_and_writes_nothing(workspace: Workspace) -> None:
    await Contact.create(tenant_id=workspace.tenant_id, name="", email="kim@example.com")
    csv_text = (
        "name,email,phone,company,tags,notes\n"
        "Kim,kim@example.com,,Acme,x,hello\n"
        "New,new@example.com,+1 212 555 0100,Acme,y,\n"
        "Dup,NEW@example.com,,,,\n"
        "Bad,bad@,,,,\n"
        "New,new2@example.com,,,,\n"
        "More,,(212) 555-0100,,z,\n"
    )
    events_before = await Event.all().count()
    dry = await run(workspace, csv_text, dry_run=True, batch_size=2)
    assert await count(workspace) == 1
    assert await Company.filter(tenant_id=workspace.tenant_id).count() == 0
    assert await Note.all().count() == 0
    assert await Event.all().count() == events_before
    assert (await contact(workspace, email="kim@example.com")).name == ""
    real = await run(workspace, csv_text, batch_size=2)
    assert (dry.created, dry.updated, dry.skipped, dry.errors) == (
        real.created,
        real.updated,
        real.skipped,
        real.errors,
    )
    assert (real.created, real.updated, real.skipped) == (2, 2, 1)


async def test_explicit_mapping_overrides_the_automatic_one(workspace: Workspace) -> None:
    csv_text = "Who,Contact,Handle,Phone,Plan\nZoe,zoe@example.com,@zoe_z,garbage,gold\n"
    mapping = {"who": "name", "CONTACT ": "email", "Handle": "telegram_username", "Phone": ""}
    result = await run(workspace, csv_text, mapping={**mapping, "Plan": "custom.plan"})
    assert (result.created, result.errors) == (1, [])
    c = await contact(workspace, email="zoe@example.com")
    assert (c.name, c.telegram_username, c.phone) == ("Zoe", "zoe_z", None)
    assert c.custom_fields == {"plan": "gold"}


async def test_a_bad_mapping_is_a_validation_error(workspace: Workspace) -> None:
    with pytest.raises(ValidationFailed) as exc:
        await run(workspace, "a,b\nx,y\n", mapping={"a": "favourite_colour"})
    assert exc.value.errors[0].field == "mapping"
    with pytest.raises(ValidationFailed) as exc:
        await run(workspace, "email\nx@example.com\n", mapping={"nope": "name"})
    assert exc.value.errors[0].field == "mapping"
    assert "nope" in exc.value.errors[0].reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "is empty"),
        (b"\n\n  \n", "is empty"),
        (bytes(range(256)) * 40, "no column with an identifier"),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00\xff" * 500,
            "no column with an identifier",
        ),
        (b"first name,last name,company\nA,B,C\n", "no column with an identifier"),
    ],
)
async def test_files_without_a_usable_header_are_refused(
    workspace: Workspace, data: bytes, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as exc:
        await run(workspace, data)
    assert exc.value.errors[0].field == "file"
    assert reason in exc.value.errors[0].reason
    assert await count(workspace) == 0


async def test_header_only_imports_nothing(workspace: Workspace) -> None:
    result = await run(workspace, "name,email\n")
    assert (result.created, result.updated, result.skipped, result.errors) == (0, 0, 0, [])


async def test_broken_rows_are_errors_not_crashes(workspace: Workspace) -> None:
    csv_text = (
        "name,email,phone\n"
        "Ok,ok@example.com,\n"  # row 2
        "Short,short@example.com\n"  # row 3: a column missing
        "Long,long@example.com,,surprise\n"  # row 4: one column too many
        "Trailing,trail@example.com,,\n"  # row 5: an empty extra column is fine
        "\n"  # row 6: blank
        "Nul,n\x00ul@example.com,\n"  # row 7
        'Open,"open@example.com,\n'  # row 8: the quote never closes
    )
    result = await run(workspace, csv_text)
    assert result.created == 2
    assert errors(result) == [(3, "row"), (4, "row"), (7, "email"), (8, "row")]


async def test_undecodable_bytes_reject_only_their_row(workspace: Workspace) -> None:
    # The encoding is settled on the first 64 KiB (UTF-8 here); a broken byte after that.
    head = "name,email\nЁлка,yolka@example.com\n" + "".join(
        f"Person {i},p{i}@example.com\n" for i in range(3000)
    )
    data = head.encode() + b"Bad \xff\xfe name,bad@example.com\nFine,fine@example.com\n"
    result = await run(workspace, data)
    assert result.created == 3002
    assert errors(result) == [(3003, "name")]
    assert (await contact(workspace, email="yolka@example.com")).name == "Ёлка"


async def test_cp1251_after_a_long_ascii_start_is_still_read(workspace: Workspace) -> None:
    head = "name,email\n" + "".join(f"Person {i},p{i}@example.com\n" for i in range(3000))
    data = head.encode() + "Ёж Колючий,hedgehog@example.com\n".encode("cp1251")
    result = await run(workspace, data)
    assert (result.created, result.errors) == (3001, [])
    assert (await contact(workspace, email="hedgehog@example.com")).name == "Ёж Колючий"


async def test_another_tenants_contacts_never_match_or_change(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    theirs = await Contact.create(
        tenant_id=other_workspace.tenant_id, name="Theirs", email="same@example.com"
    )
    await Company.create(tenant_id=other_workspace.tenant_id, name="Acme", name_key="acme")
    result = await run(workspace, "name,email,company\nMine,same@example.com,Acme\n")
    assert result.created == 1
    mine = await contact(workspace, email="same@example.com")
    assert mine.id != theirs.id and mine.name == "Mine"
    assert mine.company is not None and mine.company.tenant_id == workspace.tenant_id
    await theirs.refresh_from_db()
    assert (theirs.name, theirs.tenant_id) == ("Theirs", other_workspace.tenant_id)


async def test_viewer_may_not_import(workspace: Workspace) -> None:
    membership = await do_add_member(workspace.actor, Role.VIEWER, telegram_id=777)
    viewer = workspace.actor.__class__(
        tenant_id=workspace.tenant_id, user_id=membership.user_id, role=Role.VIEWER
    )
    with pytest.raises(PermissionDenied):
        await do_import_contacts(viewer, io.BytesIO(b"email\na@example.com\n"))
    assert await count(workspace) == 0


async def test_bidi_may_not_change_contacts_of_another_member(workspace: Workspace) -> None:
    membership = await do_add_member(workspace.actor, Role.BIDI, telegram_id=778)
    bidi = workspace.actor.__class__(
        tenant_id=workspace.tenant_id, user_id=membership.user_id, role=Role.BIDI
    )
    await Contact.create(
        tenant_id=workspace.tenant_id, email="owned@example.com", owner_id=workspace.owner_id
    )
    await Contact.create(tenant_id=workspace.tenant_id, email="free@example.com")
    data = b"email,title\nowned@example.com,CEO\nfree@example.com,CTO\nnew@example.com,CFO\n"
    result = await do_import_contacts(bidi, io.BytesIO(data))
    assert (result.created, result.updated) == (1, 1)
    assert errors(result) == [(2, "email")]
    assert (await contact(workspace, email="owned@example.com")).title is None
    assert (await contact(workspace, email="new@example.com")).owner_id == membership.user_id


async def test_audit_events_per_contact_and_one_summary_in_the_outbox(
    workspace: Workspace,
) -> None:
    await Contact.create(tenant_id=workspace.tenant_id, email="kim@example.com")
    outbox_before = await OutboxEntry.all().count()
    csv_text = "name,email\nKim,kim@example.com\nNew,new@example.com\n"
    await run(workspace, csv_text)
    events = await Event.filter(tenant_id=workspace.tenant_id, entity_type="contact").order_by("id")
    by_type = {e.type: e for e in events}
    assert set(by_type) == {"contact.created", "contact.updated", "contacts.imported"}
    created = by_type["contact.created"]
    assert created.after == {"name": "New", "email": "new@example.com"}
    assert created.actor_user_id == workspace.owner_id
    updated = by_type["contact.updated"]
    assert (updated.before, updated.after) == ({"name": ""}, {"name": "Kim"})
    summary = by_type["contacts.imported"]
    assert summary.after is not None
    assert (summary.after["created"], summary.after["updated"]) == (1, 1)
    outbox = await OutboxEntry.all().count()
    assert outbox == outbox_before + 1
    assert await OutboxEntry.filter(event_id=summary.id).exists()


async def test_progress_is_reported_per_batch(workspace: Workspace) -> None:
    seen: list[int] = []
    csv_text = "email\n" + "".join(f"p{i}@example.com\n" for i in range(5))
    await run(workspace, csv_text, batch_size=2, progress=seen.append)
    assert seen == [2, 4, 5]


async def test_export_round_trips_through_the_importer(workspace: Workspace) -> None:
    csv_text = (
        "name,email,phone,company,tags,telegram,telegram id,whatsapp,source,timezone,consent\n"
        'Иван,ivan@example.com,+7 916 123 45 67,Acme,"a, b",@ivan_p,12345,79161234567,'
        "expo,Europe/Moscow,granted\n"
        '=HYPERLINK("http://evil"),evil@example.com,,,,,,,,,\n'
        "Plain,,+1 212 555 0100,,,,,,,,\n"
    )
    first = await run(workspace, csv_text)
    assert first.created == 3
    exported = "".join([chunk async for chunk in export_contacts_csv(workspace.actor)])
    assert exported.startswith("\ufeffid,name,title,company,phone,email,")
    assert "'=HYPERLINK" in exported  # a spreadsheet shows it as text, not a formula
    again = await run(workspace, exported)
    assert (again.created, again.updated, again.skipped, again.errors) == (0, 0, 3, [])
    evil = await contact(workspace, email="evil@example.com")
    assert evil.name == '=HYPERLINK("http://evil")'


async def test_a_clash_with_a_contact_saved_meanwhile_redoes_the_batch_row_by_row(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crm.services.contacts.csv_import.batch_writing import BatchWriter

    original = BatchWriter._load
    calls = 0

    async def load_then_clash(self: Any, rows: Any, conn: Any) -> None:
        nonlocal calls
        await original(self, rows, conn)
        calls += 1
        if calls == 1:
            # Someone saves b@ between the lookup and the write of the batch.
            await Contact.create(
                tenant_id=workspace.tenant_id, email="b@example.com", using_db=conn
            )

    monkeypatch.setattr(BatchWriter, "_load", load_then_clash)
    csv_text = "name,email\nA,a@example.com\nB,b@example.com\nC,c@example.com\n"
    result = await run(workspace, csv_text)
    assert (result.created, result.errors) == (3, [])
    assert calls == 4  # the batch, then each of its rows again
    assert await count(workspace) == 3


async def test_a_bad_phone_beside_a_valid_email_keeps_the_row_with_a_warning(
    workspace: Workspace,
) -> None:
    csv_text = (
        "name,email,phone\n"
        "Keep Me,keep@example.com,12345\n"  # row 2: the email is good, the phone is not
        "Both Bad,x@,999\n"  # row 3: nothing to know the person by
        "Phone Only,bad@,+1 212 555 0100\n"  # row 4: the phone is good, the email is not
    )
    result = await run(workspace, csv_text)
    assert (result.created, result.rejected, result.warned) == (2, 1, 2)
    assert [(e.row, e.field, e.level) for e in result.errors] == [
        (2, "phone", "warning"),
        (3, "email", "error"),
        (3, "phone", "error"),
        (4, "email", "warning"),
    ]
    assert "imported without it" in result.errors[0].reason
    kept = await contact(workspace, email="keep@example.com")
    assert (kept.name, kept.phone) == ("Keep Me", None)
    assert (await contact(workspace, phone="+12125550100")).name == "Phone Only"
    assert result.as_dict()["errors"][0] == {
        "row": 2,
        "field": "phone",
        "reason": result.errors[0].reason,
        "level": "warning",
    }


def test_count_rows_counts_records_after_the_header_and_rewinds() -> None:
    data = io.BytesIO(
        b'\xef\xbb\xbfname,email,notes\r\nA,a@example.com,"two\nlines"\r\n\r\nB,b@example.com,\r\n'
    )
    data.seek(0)
    assert count_rows(data) == 3  # the multi-line record is one; the blank one counts too
    assert data.tell() == 0
    assert count_rows(io.BytesIO(b"")) == 0
    cp1251 = "Имя;Почта\nИван;ivan@example.com\n".encode("cp1251")
    assert count_rows(io.BytesIO(cp1251)) == 1
