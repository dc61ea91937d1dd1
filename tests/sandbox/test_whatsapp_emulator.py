"""The WhatsApp Cloud API emulator on real HTTP: wire format, errors, pushes, control API."""

from __future__ import annotations

import base64
import hashlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandbox.whatsapp import WhatsAppEmulator, create_emulator_app
from tests.support.servers import serve
from tests.support.whatsapp_receiver import RecordingReceiver

PHONE_ID = "106540352242922"
TOKEN = "emulator-test-token"
APP_SECRET = "emulator-app-secret"
LEAD = "972987654321"
GRAPH = "/sandbox/graph/v22.0"


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """These tests need no database (overrides the suite's autouse fixture)."""


@dataclass
class Env:
    emulator: WhatsAppEmulator
    receiver: RecordingReceiver
    http: httpx.AsyncClient  # talks to the emulator
    hook_url: str

    def register(self, connection_id: str = "c1", phone_id: str = PHONE_ID) -> None:
        self.emulator.register_connection(
            connection_id, phone_id, TOKEN, APP_SECRET, self.hook_url, waba_id="102290129340398"
        )

    async def send(self, payload: dict[str, object], token: str = TOKEN) -> httpx.Response:
        return await self.http.post(
            f"{GRAPH}/{PHONE_ID}/messages",
            json={"messaging_product": "whatsapp", **payload},
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    emulator = WhatsAppEmulator(retry_backoff=0.01, shuffle_window=0.02, rng=random.Random(3))
    receiver = RecordingReceiver(APP_SECRET)
    async with (
        serve(create_emulator_app(emulator)) as emulator_url,
        serve(receiver.app) as receiver_url,
        httpx.AsyncClient(base_url=emulator_url) as http,
    ):
        env = Env(emulator, receiver, http, f"{receiver_url}/hook")
        env.register()
        yield env


def _text(body: str, to: str = LEAD) -> dict[str, object]:
    return {"to": to, "type": "text", "text": {"body": body}}


def _assert_graph_error(response: httpx.Response, status: int, code: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["message"] and error["fbtrace_id"]
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"]
    return dict(error)


async def test_wrong_or_missing_token_is_401_code_190(env: Env) -> None:
    _assert_graph_error(await env.send(_text("hi"), token="nope"), 401, 190)
    response = await env.http.post(f"{GRAPH}/{PHONE_ID}/messages", json=_text("hi"))
    _assert_graph_error(response, 401, 190)


async def test_unknown_phone_id_is_graph_object_error(env: Env) -> None:
    response = await env.http.post(
        f"{GRAPH}/999/messages", json=_text("hi"), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    error = _assert_graph_error(response, 400, 100)
    assert error["error_subcode"] == 33


async def test_free_form_outside_the_window_is_131047(env: Env) -> None:
    error = _assert_graph_error(await env.send(_text("hello?")), 400, 131047)
    assert "Re-engagement" in str(error["message"])
    assert env.emulator.outbox() == []


async def test_send_after_inbound_answers_meta_shape_and_pushes_signed_statuses(env: Env) -> None:
    await env.emulator.inbound("c1", LEAD, "hi there", name="Lead")
    response = await env.send({"recipient_type": "individual", **_text("Hello back")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": LEAD, "wa_id": LEAD}]
    wamid = answer["messages"][0]["id"]
    assert wamid.startswith("wamid.")

    await env.emulator.drain()
    assert all(r.valid for r in env.receiver.received)
    assert env.receiver.statuses(wamid) == ["sent", "delivered", "read"]
    sent = next(s for v in env.receiver.values() for s in v.get("statuses", []))
    assert sent["recipient_id"] == LEAD and sent["pricing"]["category"] == "service"
    assert sent["conversation"]["origin"]["type"] == "service"
    body = env.receiver.received[-1].json
    assert body["object"] == "whatsapp_business_account"
    assert body["entry"][0]["id"] == "102290129340398"
    assert body["entry"][0]["changes"][0]["field"] == "messages"
    assert body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == PHONE_ID

    listed = (await env.http.get("/sandbox/whatsapp/outbox", params={"to": LEAD})).json()
    assert [(e["id"], e["text"], e["type"], e["status"]) for e in listed] == [
        (wamid, "Hello back", "text", "read")
    ]
    assert listed[0]["statuses"] == ["sent", "delivered", "read"]
    assert (await env.http.get("/sandbox/whatsapp/outbox", params={"to": "1"})).json() == []


async def test_recipient_field_is_accepted_like_to(env: Env) -> None:
    await env.emulator.inbound("c1", LEAD, "hi")
    response = await env.send({"recipient": LEAD, "type": "text", "text": {"body": "x"}})
    assert response.status_code == 200, response.text
    assert env.emulator.outbox(LEAD)[0].text == "x"


async def test_auto_read_off_stops_at_delivered(env: Env) -> None:
    env.emulator.auto_read = False
    await env.emulator.inbound("c1", LEAD, "hi")
    wamid = (await env.send(_text("yo"))).json()["messages"][0]["id"]
    await env.emulator.drain()
    assert env.receiver.statuses(wamid) == ["sent", "delivered"]


async def test_templates_known_unknown_and_param_count(env: Env) -> None:
    def template(name: str, code: str, params: list[str]) -> dict[str, object]:
        components = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]
        return {
            "to": LEAD,
            "type": "template",
            "template": {"name": name, "language": {"code": code}, "components": components},
        }

    ok = await env.send(template("follow_up", "en", ["Dana"]))  # no window needed
    assert ok.status_code == 200, ok.text
    assert ok.json()["messages"][0]["message_status"] == "accepted"
    _assert_graph_error(await env.send(template("nope", "en", [])), 400, 132001)
    _assert_graph_error(await env.send(template("follow_up", "fr", ["x"])), 400, 132001)
    _assert_graph_error(await env.send(template("follow_up", "en", [])), 400, 132000)

    added = await env.http.post(
        "/sandbox/whatsapp/templates",
        json={"name": "promo", "language": "en_US", "body": "{{1}} gets {{2}} off"},
    )
    assert added.json()["param_count"] == 2
    assert (await env.send(template("promo", "en_US", ["Ann", "10%"]))).status_code == 200
    texts = [e.text for e in env.emulator.outbox()]
    assert texts == ["Hi Dana, just following up on our conversation.", "Ann gets 10% off"]
    assert env.emulator.outbox()[0].template == {
        "name": "follow_up",
        "language": "en",
        "params": ["Dana"],
    }


async def test_interactive_limits(env: Env) -> None:
    await env.emulator.inbound("c1", LEAD, "hi")

    def buttons(*titles: str) -> dict[str, object]:
        return {
            "to": LEAD,
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Pick"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": f"b{i}", "title": t}}
                        for i, t in enumerate(titles)
                    ]
                },
            },
        }

    assert (await env.send(buttons("Yes", "No"))).status_code == 200
    assert env.emulator.outbox()[0].buttons == ["Yes", "No"]
    _assert_graph_error(await env.send(buttons("a", "b", "c", "d")), 400, 131009)
    _assert_graph_error(await env.send(buttons("x" * 21)), 400, 131009)


async def test_mark_as_read_is_accepted(env: Env) -> None:
    response = await env.send({"status": "read", "message_id": "wamid.abc"})
    assert response.json() == {"success": True}
    assert env.emulator.read_marks == ["wamid.abc"]


async def test_media_upload_url_download_and_delete(env: Env) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    data = b"\x89PNG fake image bytes"
    uploaded = await env.http.post(
        f"{GRAPH}/{PHONE_ID}/media",
        files={
            "file": ("pic.png", data, "image/png"),
            "messaging_product": (None, "whatsapp"),
            "type": (None, "image/png"),
        },
        headers=auth,
    )
    assert uploaded.status_code == 200, uploaded.text
    media_id = uploaded.json()["id"]
    assert media_id.isdigit()  # pywa tells media ids from paths by this

    info = (await env.http.get(f"{GRAPH}/{media_id}", headers=auth)).json()
    assert info["messaging_product"] == "whatsapp"
    assert info["id"] == media_id and info["mime_type"] == "image/png"
    assert info["file_size"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["url"].startswith(str(env.http.base_url).rstrip("/") + "/sandbox/graph/")

    assert (await env.http.get(info["url"])).status_code == 401
    downloaded = await env.http.get(info["url"], headers=auth)
    assert downloaded.content == data
    assert downloaded.headers["content-type"] == "image/png"

    assert (
        await env.http.get(f"{GRAPH}/{media_id}", headers={"Authorization": "Bearer x"})
    ).status_code == 401
    assert (await env.http.delete(f"{GRAPH}/{media_id}", headers=auth)).json() == {"success": True}
    _assert_graph_error(await env.http.get(f"{GRAPH}/{media_id}", headers=auth), 400, 100)


async def test_faults_rate_limits_server_errors_and_slowness(env: Env) -> None:
    await env.emulator.inbound("c1", LEAD, "hi")
    post = env.http.post
    await post("/sandbox/whatsapp/faults", json={"kind": "rate_limit", "count": 2})
    _assert_graph_error(await env.send(_text("1")), 400, 130429)
    _assert_graph_error(await env.send(_text("2")), 400, 130429)
    assert (await env.send(_text("3"))).status_code == 200

    await post("/sandbox/whatsapp/faults", json={"kind": "pair_rate_limit"})
    _assert_graph_error(await env.send(_text("4")), 400, 131056)
    await post("/sandbox/whatsapp/faults", json={"kind": "server_error", "status": 503})
    await post("/sandbox/whatsapp/faults", json={"kind": "server_error"})
    _assert_graph_error(await env.send(_text("5")), 503, 2)
    _assert_graph_error(await env.send(_text("6")), 500, 1)

    await post("/sandbox/whatsapp/faults", json={"kind": "slow", "delay": 0.3})
    started = time.monotonic()
    assert (await env.send(_text("7"))).status_code == 200
    assert time.monotonic() - started >= 0.3

    await post("/sandbox/whatsapp/faults", json={"kind": "rate_limit", "count": 5})
    assert (await env.http.delete("/sandbox/whatsapp/faults")).status_code == 200
    assert (await env.send(_text("8"))).status_code == 200

    await post("/sandbox/whatsapp/faults", json={"kind": "rate_limit", "connection_id": "other"})
    assert (await env.send(_text("9"))).status_code == 200
    assert [e.text for e in env.emulator.outbox()] == ["3", "7", "8", "9"]


async def test_status_before_response_pushes_sent_first(env: Env) -> None:
    await env.http.post("/sandbox/whatsapp/delivery", json={"status_before_response": True})
    await env.emulator.inbound("c1", LEAD, "hi")
    wamid = (await env.send(_text("early"))).json()["messages"][0]["id"]
    # Already there when the send call answered, before any drain.
    assert "sent" in env.receiver.statuses(wamid)
    await env.emulator.drain()
    assert env.receiver.statuses(wamid) == ["sent", "delivered", "read"]


async def test_pushes_keep_order_per_connection(env: Env) -> None:
    ids = [await env.emulator.inbound("c1", LEAD, f"m{i}") for i in range(20)]
    await env.http.post("/sandbox/whatsapp/drain")
    assert env.receiver.message_ids() == ids


async def test_duplicates_and_shuffle(env: Env) -> None:
    response = await env.http.post(
        "/sandbox/whatsapp/delivery", json={"duplicates": 2, "shuffle": True}
    )
    assert response.json()["duplicates"] == 2
    ids = [await env.emulator.inbound("c1", LEAD, f"m{i}") for i in range(6)]
    await env.emulator.drain()
    received = env.receiver.message_ids()
    assert sorted(received) == sorted(ids * 2)
    assert received != [i for i in ids for _ in range(2)]  # seeded shuffle changed the order
    assert all(r.valid for r in env.receiver.received)


async def test_failed_pushes_are_retried(env: Env) -> None:
    env.receiver.fail_next = 2
    wamid = await env.emulator.inbound("c1", LEAD, "retry me")
    await env.emulator.drain()
    assert env.receiver.message_ids() == [wamid]
    assert env.emulator.deliveries[-1].attempts == 3 and env.emulator.deliveries[-1].ok


async def test_unreachable_webhook_gives_up_and_drain_returns(env: Env) -> None:
    env.emulator.register_connection("dead", "555", TOKEN, APP_SECRET, "http://127.0.0.1:9/x")
    await env.emulator.inbound("dead", LEAD, "anyone?")
    await env.emulator.drain()
    delivery = env.emulator.deliveries[-1]
    assert not delivery.ok and delivery.attempts == env.emulator.push_attempts
    assert delivery.error == "ConnectError"


async def test_inbound_control_api_builds_meta_messages(env: Env) -> None:
    def inbound(**fields: object) -> dict[str, object]:
        return {"connection_id": "c1", "from": LEAD, "name": "Lead", **fields}

    post = env.http.post
    replied = await post("/sandbox/whatsapp/inbound", json=inbound(text="first"))
    first = replied.json()["message_id"]
    voice = base64.b64encode(b"OggS voice").decode()
    await post("/sandbox/whatsapp/inbound", json=inbound(type="voice", media_base64=voice))
    await post(
        "/sandbox/whatsapp/inbound",
        json=inbound(type="document", media_base64=voice, filename="a.pdf", text="see"),
    )
    await post(
        "/sandbox/whatsapp/inbound",
        json=inbound(type="location", latitude=1.5, longitude=2.5, text="Office"),
    )
    await post(
        "/sandbox/whatsapp/inbound",
        json=inbound(type="button", text="Stop", button_payload="STOP", reply_to=first),
    )
    await post(
        "/sandbox/whatsapp/inbound",
        json=inbound(type="interactive", text="Yes", button_payload="yes"),
    )
    await post(
        "/sandbox/whatsapp/inbound", json=inbound(type="reaction", emoji="👍", message_id=first)
    )
    await post("/sandbox/whatsapp/inbound", json=inbound(marketing="stop"))
    await env.emulator.drain()

    values = env.receiver.values()
    messages = [m for v in values for m in v.get("messages", [])]
    assert values[0]["contacts"] == [{"profile": {"name": "Lead"}, "wa_id": LEAD}]
    assert messages[0]["text"] == {"body": "first"} and messages[0]["from"] == LEAD
    assert messages[1]["type"] == "audio" and messages[1]["audio"]["voice"] is True
    media_id = messages[1]["audio"]["id"]
    assert env.emulator.media_bytes(media_id) == b"OggS voice"
    assert (
        messages[1]["audio"]["sha256"]
        == base64.b64encode(hashlib.sha256(b"OggS voice").digest()).decode()
    )
    assert messages[2]["document"]["filename"] == "a.pdf"
    assert messages[2]["document"]["caption"] == "see"
    assert messages[3]["location"] == {"latitude": 1.5, "longitude": 2.5, "name": "Office"}
    assert messages[4]["button"] == {"payload": "STOP", "text": "Stop"}
    assert messages[4]["context"]["id"] == first
    assert messages[5]["interactive"]["button_reply"] == {"id": "yes", "title": "Yes"}
    assert messages[6]["reaction"] == {"message_id": first, "emoji": "👍"}
    preference = values[-1]["user_preferences"][0]
    assert preference["value"] == "stop" and preference["category"] == "marketing_messages"
    assert preference["wa_id"] == LEAD
    assert env.receiver.received[-1].json["entry"][0]["changes"][0]["field"] == "user_preferences"


async def test_inbound_control_api_errors(env: Env) -> None:
    post = env.http.post
    unknown = await post("/sandbox/whatsapp/inbound", json={"connection_id": "x", "from": LEAD})
    assert unknown.status_code == 404
    no_media = await post(
        "/sandbox/whatsapp/inbound", json={"connection_id": "c1", "from": LEAD, "type": "image"}
    )
    assert no_media.status_code == 422
    bad_type = await post(
        "/sandbox/whatsapp/inbound", json={"connection_id": "c1", "from": LEAD, "type": "poll"}
    )
    assert bad_type.status_code == 422
    not_a_number = await post(
        "/sandbox/whatsapp/inbound", json={"connection_id": "c1", "from": "Anna", "text": "hi"}
    )
    assert not_a_number.status_code == 422 and "from" in not_a_number.json()["detail"]


async def test_connections_api_replaces_and_hides_secrets(env: Env) -> None:
    body = {
        "connection_id": 5,
        "phone_id": 777,
        "token": "t1",
        "app_secret": "s1",
        "webhook_url": env.hook_url,
    }
    assert (await env.http.post("/sandbox/whatsapp/connections", json=body)).status_code == 200
    body["token"] = "t2"
    await env.http.post("/sandbox/whatsapp/connections", json=body)
    listed = (await env.http.get("/sandbox/whatsapp/connections")).json()
    assert [c["connection_id"] for c in listed] == ["c1", "5"]
    assert all("token" not in c and "app_secret" not in c for c in listed)
    assert env.emulator.connections["5"].token == "t2"


async def test_reset_clears_state(env: Env) -> None:
    await env.emulator.inbound("c1", LEAD, "hi")
    await env.send(_text("x"))
    await env.emulator.drain()
    assert (await env.http.post("/sandbox/whatsapp/reset")).json() == {"ok": True}
    assert env.emulator.outbox() == [] and env.emulator.connections == {}
    assert (await env.http.get("/sandbox/whatsapp/outbox")).json() == []


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "sandbox" / "whatsapp.json"
    receiver = RecordingReceiver(APP_SECRET)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    text = {"messaging_product": "whatsapp", **_text("Hello back")}
    async with serve(receiver.app) as receiver_url:
        first = WhatsAppEmulator(retry_backoff=0.01, state_path=state)
        async with (
            serve(create_emulator_app(first)) as emulator_url,
            httpx.AsyncClient(base_url=emulator_url) as http,
        ):
            first.register_connection("c1", PHONE_ID, TOKEN, APP_SECRET, f"{receiver_url}/hook")
            await first.inbound("c1", LEAD, "hi there", name="Lead")
            sent = await http.post(f"{GRAPH}/{PHONE_ID}/messages", json=text, headers=auth)
            assert sent.status_code == 200, sent.text
            uploaded = await http.post(
                f"{GRAPH}/{PHONE_ID}/media",
                files={
                    "file": ("pic.png", b"PNG bytes", "image/png"),
                    "messaging_product": (None, "whatsapp"),
                },
                headers=auth,
            )
            await first.drain()

        second = WhatsAppEmulator(retry_backoff=0.01, state_path=state)
        async with (
            serve(create_emulator_app(second)) as emulator_url,
            httpx.AsyncClient(base_url=emulator_url) as http,
        ):
            # The number, the lead's open 24-hour window and the outbox are still there.
            again = await http.post(f"{GRAPH}/{PHONE_ID}/messages", json=text, headers=auth)
            assert again.status_code == 200, again.text
            listed = (
                await http.get("/sandbox/whatsapp/outbox", params={"connection_id": "c1"})
            ).json()
            assert [(e["text"], e["status"]) for e in listed] == [("Hello back", "read")] * 2
            assert listed[0]["id"] == sent.json()["messages"][0]["id"]
            media = await http.get(f"{GRAPH}/{uploaded.json()['id']}", headers=auth)
            assert media.status_code == 200
            downloaded = await http.get(media.json()["url"], headers=auth)
            assert downloaded.content == b"PNG bytes"
            await second.drain()
