"""CSV import and export of contacts over HTTP."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest

from crm.models import Contact, Role
from tests.support.workspace import Workspace

IMPORT = "/api/v1/contacts/import"
EXPORT = "/api/v1/contacts/export"


async def upload(
    client: httpx.AsyncClient,
    ws: Workspace | dict[str, str],
    data: bytes,
    *,
    params: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> httpx.Response:
    headers = ws.headers if isinstance(ws, Workspace) else ws
    return await client.post(
        IMPORT,
        files={"file": ("contacts.csv", data, "text/csv")},
        data=form or {},
        params=params or {},
        headers=headers,
    )


CSV = (
    b"First Name,Last Name,Email,Phone Number,Company Name,Job Title\n"
    b"Ivan,Petrov,ivan@example.com,(415) 555-2671,Acme,CTO\n"
    b"Anna,Smith,not-an-email,,Acme,\n"
    b"Ivan,P.,IVAN@example.com,,,\n"
)


async def test_import_reports_counts_and_rejected_rows(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    r = await upload(client, workspace, CSV)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["created"], body["updated"], body["skipped"]) == (1, 0, 1)
    assert len(body["errors"]) == 1
    assert body["errors"][0]["row"] == 3 and body["errors"][0]["field"] == "email"
    assert "not-an-email" in body["errors"][0]["reason"]
    stored = await Contact.get(tenant_id=workspace.tenant_id, email="ivan@example.com")
    assert (stored.name, stored.phone) == ("Ivan Petrov", "+14155552671")


@pytest.mark.parametrize("where", ["query", "form"])
async def test_dry_run_writes_nothing(
    client: httpx.AsyncClient, workspace: Workspace, where: str
) -> None:
    flag = {"dry_run": "true"}
    r = await upload(
        client,
        workspace,
        CSV,
        params=flag if where == "query" else None,
        form=flag if where == "form" else None,
    )
    assert r.status_code == 200
    assert (r.json()["created"], r.json()["skipped"]) == (1, 1)
    assert await Contact.filter(tenant_id=workspace.tenant_id).count() == 0


async def test_overwrite_and_mapping_form_fields(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    await Contact.create(tenant_id=workspace.tenant_id, name="Old", email="zoe@example.com")
    data = b"Who,Mail,Plan\nZoe New,zoe@example.com,gold\n"
    mapping = json.dumps({"Who": "name", "Mail": "email", "Plan": "custom.plan"})
    r = await upload(client, workspace, data, form={"mapping": mapping, "overwrite": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["updated"] == 1
    stored = await Contact.get(tenant_id=workspace.tenant_id, email="zoe@example.com")
    assert (stored.name, stored.custom_fields) == ("Zoe New", {"plan": "gold"})


@pytest.mark.parametrize(
    ("mapping", "reason"),
    [("{not json", "not valid JSON"), ('["a"]', "JSON object"), ('{"a": "shoe_size"}', "field")],
)
async def test_bad_mapping_is_a_422_naming_mapping(
    client: httpx.AsyncClient, workspace: Workspace, mapping: str, reason: str
) -> None:
    r = await upload(client, workspace, b"a,email\nx,x@example.com\n", form={"mapping": mapping})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "mapping"
    assert reason in r.json()["errors"][0]["reason"]


async def test_missing_file_is_a_422(client: httpx.AsyncClient, workspace: Workspace) -> None:
    r = await client.post(IMPORT, data={"dry_run": "true"}, headers=workspace.headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "file"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x02\xff\xfe" * 1000,
        "Имя;Фамилия\nИван;Петров\n".encode("cp1251"),
        "name\temail\n".encode("utf-16"),
        b'name,email\n"Open,x@example.com\n',
        b"name,email\nA\nB,b@example.com,extra\nC,c@example.com\n",
        "\ufeffname;email\nБорис;boris@example.com\n\xff\n".encode("utf-8", "surrogateescape"),
        "name,email\nБорис,boris@example.com\n".encode("cp1251") + b"\x98\x00\n",
    ],
)
async def test_broken_files_never_answer_500(
    client: httpx.AsyncClient, workspace: Workspace, data: bytes
) -> None:
    r = await upload(client, workspace, data)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 422:
        assert r.json()["errors"][0]["field"] == "file"
    else:
        assert set(r.json()) == {"created", "updated", "skipped", "errors"}


async def test_viewer_gets_403_on_import_but_may_export(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    _, viewer = await workspace.member(Role.VIEWER)
    r = await upload(client, viewer, CSV)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert await Contact.filter(tenant_id=workspace.tenant_id).count() == 0
    assert (await client.get(EXPORT, headers=viewer)).status_code == 200


async def test_without_a_key_both_are_401(client: httpx.AsyncClient) -> None:
    assert (await client.get(EXPORT)).status_code == 401
    r = await client.post(IMPORT, files={"file": ("c.csv", CSV, "text/csv")})
    assert r.status_code == 401


async def test_export_streams_csv_and_round_trips(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    data = (
        "ФИО,Телефон,Почта,Компания,Теги,Telegram\n"
        'Иван Петров,+7 916 123-45-67,ivan@example.com,Ромашка,"vip, опт",@ivan_p\n'
        "@mallory,,mallory@example.com,,,\n"
        "-2+3,,calc@example.com,,,\n"
    ).encode()
    assert (await upload(client, workspace, data)).json()["created"] == 3
    await upload(client, other_workspace, b"email\nsecret@other.example\n")

    r = await client.get(EXPORT, headers=workspace.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="contacts.csv"'
    text = r.content.decode("utf-8-sig")
    assert "secret@other.example" not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["email"] for row in rows] == [
        "ivan@example.com",
        "mallory@example.com",
        "calc@example.com",
    ]
    ivan = rows[0]
    assert (ivan["name"], ivan["phone"], ivan["company"]) == (
        "Иван Петров",
        "+79161234567",
        "Ромашка",
    )
    assert (ivan["tags"], ivan["telegram_username"]) == ("vip, опт", "ivan_p")
    # Cells a spreadsheet would run as formulas are exported as text.
    assert rows[1]["name"] == "'@mallory" and rows[2]["name"] == "'-2+3"

    again = await upload(client, workspace, r.content)
    assert again.json() == {"created": 0, "updated": 0, "skipped": 3, "errors": []}
    names = (
        await Contact.filter(tenant_id=workspace.tenant_id)
        .order_by("id")
        .values_list("name", flat=True)
    )
    assert names == ["Иван Петров", "@mallory", "-2+3"]


async def test_export_of_an_empty_workspace_is_just_the_header(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    r = await client.get(EXPORT, headers=workspace.headers)
    assert r.status_code == 200
    assert r.content.decode("utf-8-sig").splitlines() == [
        "id,name,title,company,phone,email,telegram_username,telegram_id,whatsapp_id,tags,"
        "source,consent,timezone,owner_id,created_at"
    ]


async def test_import_never_touches_another_tenant(
    client: httpx.AsyncClient, workspace: Workspace, other_workspace: Workspace
) -> None:
    await upload(client, other_workspace, b"name,email\nTheirs,same@example.com\n")
    r = await upload(
        client, workspace, b"name,email\nMine,same@example.com\n", form={"overwrite": "true"}
    )
    assert r.json()["created"] == 1
    theirs = await Contact.get(tenant_id=other_workspace.tenant_id, email="same@example.com")
    assert theirs.name == "Theirs"


async def test_a_bad_phone_beside_a_good_email_is_a_warning_not_a_rejection(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    r = await upload(client, workspace, b"name,email,phone\nKeep,keep@example.com,12345\n")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == 1
    [warning] = body["errors"]
    assert (warning["row"], warning["field"], warning["level"]) == (2, "phone", "warning")
    assert await Contact.filter(tenant_id=workspace.tenant_id, email="keep@example.com").exists()
