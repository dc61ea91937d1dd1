"""``GET /sandbox``: play a lead on WhatsApp or Telegram and watch the CRM side at once.

The page is static; its script talks to the emulators' control API (as the lead) and to the
CRM's own REST API with an API key (as the operator). The key comes from a single-use sign-in
link (``/sandbox?signin=TOKEN``, exchanged once at ``POST /sandbox/session``) or is pasted by
the visitor; it only sees its own workspace, and the lead pane shows only that workspace's
connections. Text from either side is put into the page with ``textContent`` only, so nothing
typed can inject markup, and the Content-Security-Policy lets the page load nothing from
another origin. The app serves every ``/sandbox`` path but the emulators' wire APIs to
loopback clients only (see ``is_control_path``).
"""

from __future__ import annotations

import ipaddress
import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from crm.services.signin import do_redeem_sign_in

router = APIRouter()

# What the adapters, the operator bot and litellm call (token-checked like the real APIs);
# every other /sandbox path is the control API and the page.
_WIRE_PATH = re.compile(r"^/sandbox/(telegram/(file/)?bot\d+:[^/]*/|graph/|llm/v1/)")
# A request relayed by a proxy came from elsewhere, whatever address the proxy connects from.
_PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    # The sign-in token is in the address until the script removes it: never sent onwards.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def is_control_path(path: str) -> bool:
    """True for the sandbox page and control API, False for the emulators' wire APIs."""
    if path != "/sandbox" and not path.startswith("/sandbox/"):
        return False
    return _WIRE_PATH.match(path) is None


def from_this_machine(request: Request) -> bool:
    """True when the client is on loopback and no proxy relayed the request."""
    if any(name in request.headers for name in _PROXY_HEADERS):
        return False
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class SessionIn(BaseModel):
    """``POST /sandbox/session``: the token of a sign-in link."""

    token: str = Field(min_length=1, max_length=200)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CRM sandbox</title>
<link rel="icon" href="/sandbox/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/sandbox/page.css">
<script src="/sandbox/page.js" defer></script>
</head>
<body>
<header>
  <strong>CRM sandbox</strong>
  <label>API key <input id="key" placeholder="crm_... (from crm tenants create)"></label>
  <button id="connect">Connect</button>
  <span id="status"></span>
</header>
<div id="signin" class="banner" hidden></div>
<main>
  <section>
    <h2>You are the lead</h2>
    <div class="row">
      <select id="channel"></select>
      <input id="lead" size="16" title="WhatsApp number or Telegram user id">
      <input id="name" size="12" value="Anna" title="your name">
    </div>
    <div id="leadlog" class="log"></div>
    <div class="row compose">
      <input id="leadtext" class="grow" placeholder="Write as the lead and press Enter">
      <button id="leadsend">Send</button>
    </div>
    <div id="leaderror" class="error"></div>
  </section>
  <section>
    <h2>The CRM inbox</h2>
    <div id="convs"></div>
    <div id="crmlog" class="log"></div>
    <div class="row compose">
      <input id="replytext" class="grow" placeholder="Reply as the operator">
      <button id="reply">Reply</button>
    </div>
    <div id="crmerror" class="error"></div>
  </section>
</main>
</body>
</html>
"""

STYLE = """\
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
header { padding: 12px 20px; background: #1d2330; color: #fff; display: flex; gap: 12px;
         align-items: center; flex-wrap: wrap; }
header input { width: 420px; max-width: 90vw; }
main { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px; }
section { background: #fff; border-radius: 8px; padding: 12px; min-height: 60vh;
          display: flex; flex-direction: column; }
h2 { margin: 0 0 8px; font-size: 16px; }
.row { display: flex; gap: 8px; margin-bottom: 8px; flex-wrap: wrap; }
.compose { margin-top: 8px; }
.grow { flex: 1; }
.log { flex: 1; overflow-y: auto; border: 1px solid #dde; border-radius: 6px; padding: 8px; }
.msg { max-width: 75%; margin: 4px 0; padding: 6px 10px; border-radius: 10px;
       white-space: pre-wrap; word-wrap: break-word; }
.in { background: #e8eefc; } .out { background: #dcf8c6; margin-left: auto; }
.note { background: #fff4c2; margin: 4px auto; }
.meta { font-size: 11px; color: #667; }
.conv { padding: 6px; border-bottom: 1px solid #eee; cursor: pointer; }
.conv.active { background: #eef; }
.error { color: #b00020; }
.banner { margin: 16px 16px 0; padding: 10px 14px; border-radius: 8px; background: #fdecea;
          color: #7a1c12; }
.banner.ok { background: #e6f4ea; color: #1e4620; }
@media (max-width: 800px) { main { grid-template-columns: 1fr; } }
"""

SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const KEY = "crm-sandbox-key";
const state = { key: localStorage.getItem(KEY) || "", channels: [], conv: null };
$("lead").value = localStorage.getItem("crm-sandbox-lead") || "4915112345678";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function problemText(body, fallback) {
  if (body && body.detail) return body.detail;
  return fallback;
}
async function api(path, options = {}) {
  const headers = Object.assign({ "Authorization": "Bearer " + state.key,
                                  "Content-Type": "application/json" }, options.headers || {});
  const reply = await fetch(path, Object.assign({}, options, { headers }));
  const body = reply.headers.get("content-type")?.includes("json") ? await reply.json() : null;
  if (!reply.ok) throw new Error(problemText(body, reply.statusText));
  return body;
}
function banner(text, ok) {
  $("signin").textContent = text;
  $("signin").className = ok ? "banner ok" : "banner";
  $("signin").hidden = false;
}
async function signIn(token) {
  // The token works once: take it out of the address (and history) before using it.
  history.replaceState(null, "", "/sandbox");
  const reply = await fetch("/sandbox/session", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }) });
  const body = reply.headers.get("content-type")?.includes("json") ? await reply.json() : null;
  if (!reply.ok) {
    banner("Sign-in failed: " + problemText(body, reply.statusText) +
           ". Send /start to the operator bot for a new link.", false);
    return false;
  }
  state.key = body.api_key;
  localStorage.setItem(KEY, state.key);
  banner("Signed in to " + body.workspace + ".", true);
  return true;
}
function current() {
  return state.channels.find((c) => String(c.id) === $("channel").value);
}
async function connect() {
  state.key = $("key").value.trim() || state.key;
  localStorage.setItem(KEY, state.key);
  state.conv = null;
  try {
    const list = await api("/api/v1/channels");
    // Only this workspace's channels: the key sees nothing else.
    state.channels = list.items.filter((c) => c.sandbox && c.active);
    $("channel").replaceChildren(...state.channels.map((c) => {
      const option = el("option", null, c.kind + " #" + c.id + " " + c.display_name);
      option.value = String(c.id);
      return option;
    }));
    $("status").textContent = state.channels.length
      ? "connected" : "no sandbox channels in this workspace";
  } catch (error) {
    $("status").textContent = "could not connect: " + error.message;
  }
}
async function leadSend() {
  const channel = current();
  const text = $("leadtext").value;
  if (!channel || !text.trim()) return;
  localStorage.setItem("crm-sandbox-lead", $("lead").value);
  const lead = $("lead").value.trim();
  if (channel.kind === "whatsapp") {
    await api("/sandbox/whatsapp/inbound", { method: "POST", body: JSON.stringify(
      { connection_id: String(channel.id), from: lead, name: $("name").value, text }) });
  } else {
    if (!/^[1-9][0-9]{0,15}$/.test(lead)) throw new Error("a Telegram user id is a number");
    await api("/sandbox/telegram/updates", { method: "POST", body: JSON.stringify(
      { connection_id: String(channel.id), from_user_id: Number(lead),
        first_name: $("name").value, text }) });
  }
  $("leadtext").value = "";
  $("leaderror").textContent = "";
}
async function refreshLead() {
  const channel = current();
  if (!channel) return;
  const lead = $("lead").value.trim();
  let items = [];
  if (channel.kind === "whatsapp") {
    // Only what this connection sent: another workspace may write to the same number.
    const out = await api("/sandbox/whatsapp/outbox?connection_id=" + channel.id +
                          "&to=" + encodeURIComponent(lead));
    items = out.map((m) => ({ text: m.text || "[" + m.type + "]", meta: m.status }));
  } else {
    if (!/^[1-9][0-9]{0,15}$/.test(lead)) return;
    const sent = await api("/sandbox/telegram/sent?connection_id=" + channel.id +
                           "&chat_id=" + encodeURIComponent(lead));
    items = sent.map((m) => ({ text: m.text || m.caption || "[media]", meta: "" }));
  }
  $("leadlog").replaceChildren(...items.map((m) => {
    const node = el("div", "msg in", m.text);
    node.appendChild(el("div", "meta", "from the business " + m.meta));
    return node;
  }));
}
async function refreshCrm() {
  const list = await api("/api/v1/conversations?limit=20");
  $("convs").replaceChildren(...list.items.map((c) => {
    const node = el("div", "conv" + (c.id === state.conv ? " active" : ""),
      c.channel + " #" + c.id + " (" + c.unread_count + " unread) " + c.last_message_preview);
    node.onclick = () => { state.conv = c.id; refreshCrm(); };
    return node;
  }));
  if (state.conv === null && list.items.length) state.conv = list.items[0].id;
  if (state.conv === null) return;
  const messages = await api("/api/v1/conversations/" + state.conv +
                             "/messages?order=oldest&limit=100");
  $("crmlog").replaceChildren(...messages.items.map((m) => {
    const node = el("div", "msg " + m.direction, m.text || "[" + m.kind + "]");
    const meta = m.direction === "out" ? m.status + (m.error_title ? ": " + m.error_title : "")
                                       : m.direction;
    node.appendChild(el("div", "meta", meta));
    return node;
  }));
}
async function reply() {
  const text = $("replytext").value;
  if (state.conv === null || !text.trim()) return;
  try {
    await api("/api/v1/conversations/" + state.conv + "/messages",
              { method: "POST", body: JSON.stringify({ text }) });
    $("replytext").value = "";
    $("crmerror").textContent = "";
  } catch (error) {
    $("crmerror").textContent = error.message;
  }
}
$("connect").onclick = connect;
$("leadsend").onclick = () => leadSend().catch((e) => { $("leaderror").textContent = e.message; });
$("leadtext").onkeydown = (e) => { if (e.key === "Enter") $("leadsend").onclick(); };
$("reply").onclick = reply;
$("replytext").onkeydown = (e) => { if (e.key === "Enter") reply(); };
setInterval(() => {
  if (!state.key) return;
  refreshLead().catch(() => {});
  refreshCrm().catch(() => {});
}, 1000);
(async () => {
  const token = new URLSearchParams(location.search).get("signin");
  if (token) await signIn(token);
  if (state.key) connect();
})();
"""


ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#1d2330"/>'
    '<path d="M4 5h8v5H7l-3 2z" fill="#dcf8c6"/></svg>'
)


def _asset(body: str, media_type: str) -> Response:
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/sandbox", response_class=HTMLResponse, include_in_schema=False)
async def sandbox_page() -> HTMLResponse:
    """The sandbox page: one side plays the lead, the other shows the CRM inbox."""
    return HTMLResponse(PAGE, headers=SECURITY_HEADERS)


@router.get("/sandbox/page.js", include_in_schema=False)
async def sandbox_script() -> Response:
    """The page's script (served, not inline, so the CSP can forbid inline code)."""
    return _asset(SCRIPT, "text/javascript; charset=utf-8")


@router.get("/sandbox/page.css", include_in_schema=False)
async def sandbox_style() -> Response:
    """The page's style sheet."""
    return _asset(STYLE, "text/css; charset=utf-8")


@router.get("/sandbox/favicon.svg", include_in_schema=False)
async def sandbox_icon() -> Response:
    """The page's icon (else the browser asks for /favicon.ico and gets a 404)."""
    return _asset(ICON, "image/svg+xml")


@router.post("/sandbox/session", tags=["sandbox"])
async def sandbox_session(data: SessionIn) -> dict[str, object]:
    """Exchange a sign-in link's token, once, for an API key scoped to its workspace."""
    issued = await do_redeem_sign_in(data.token)
    await issued.api_key.fetch_related("tenant")
    return {
        "api_key": issued.token,
        "tenant_id": issued.api_key.tenant_id,
        "workspace": issued.api_key.tenant.name,
    }
