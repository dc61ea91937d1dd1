"""``GET /sandbox``: play a lead on WhatsApp or Telegram and watch the CRM side at once.

The page is static; its script talks to the emulators' control API (as the lead) and to the
CRM's own REST API with the API key the visitor pastes (as the operator). Text from either
side is put into the page with ``textContent`` only, so nothing typed can inject markup.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CRM sandbox</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { padding: 12px 20px; background: #1d2330; color: #fff; display: flex; gap: 12px;
           align-items: center; flex-wrap: wrap; }
  header input { width: 420px; max-width: 90vw; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px; }
  section { background: #fff; border-radius: 8px; padding: 12px; min-height: 60vh;
            display: flex; flex-direction: column; }
  h2 { margin: 0 0 8px; font-size: 16px; }
  .row { display: flex; gap: 8px; margin-bottom: 8px; flex-wrap: wrap; }
  .log { flex: 1; overflow-y: auto; border: 1px solid #dde; border-radius: 6px; padding: 8px; }
  .msg { max-width: 75%; margin: 4px 0; padding: 6px 10px; border-radius: 10px;
         white-space: pre-wrap; word-wrap: break-word; }
  .in { background: #e8eefc; } .out { background: #dcf8c6; margin-left: auto; }
  .note { background: #fff4c2; margin: 4px auto; }
  .meta { font-size: 11px; color: #667; }
  .conv { padding: 6px; border-bottom: 1px solid #eee; cursor: pointer; }
  .conv.active { background: #eef; }
  .error { color: #b00020; }
  @media (max-width: 800px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <strong>CRM sandbox</strong>
  <label>API key <input id="key" placeholder="crm_... (from crm tenants create)"></label>
  <button id="connect">Connect</button>
  <span id="status"></span>
</header>
<main>
  <section>
    <h2>You are the lead</h2>
    <div class="row">
      <select id="channel"></select>
      <input id="lead" size="16" title="WhatsApp number or Telegram user id">
      <input id="name" size="12" value="Anna" title="your name">
    </div>
    <div id="leadlog" class="log"></div>
    <div class="row" style="margin-top:8px">
      <input id="leadtext" style="flex:1" placeholder="Write as the lead and press Enter">
      <button id="leadsend">Send</button>
    </div>
  </section>
  <section>
    <h2>The CRM inbox</h2>
    <div id="convs"></div>
    <div id="crmlog" class="log"></div>
    <div class="row" style="margin-top:8px">
      <input id="replytext" style="flex:1" placeholder="Reply as the operator">
      <button id="reply">Reply</button>
    </div>
    <div id="crmerror" class="error"></div>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const fromLink = location.hash.startsWith("#key=") ? location.hash.slice(5) : "";
if (fromLink) {
  localStorage.setItem("crm-sandbox-key", fromLink);
  history.replaceState(null, "", "/sandbox");
}
const state = { key: localStorage.getItem("crm-sandbox-key") || "", channels: [], conv: null };
$("key").value = state.key;
$("lead").value = localStorage.getItem("crm-sandbox-lead") || "4915112345678";

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
async function api(path, options = {}) {
  const headers = Object.assign({ "Authorization": "Bearer " + state.key,
                                  "Content-Type": "application/json" }, options.headers || {});
  const reply = await fetch(path, Object.assign({}, options, { headers }));
  const body = reply.headers.get("content-type")?.includes("json") ? await reply.json() : null;
  if (!reply.ok) throw new Error((body && body.detail) || reply.statusText);
  return body;
}
function current() {
  return state.channels.find((c) => String(c.id) === $("channel").value);
}
async function connect() {
  state.key = $("key").value.trim();
  localStorage.setItem("crm-sandbox-key", state.key);
  try {
    const list = await api("/api/v1/channels");
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
    await api("/sandbox/telegram/updates", { method: "POST", body: JSON.stringify(
      { connection_id: String(channel.id), from_user_id: Number(lead),
        first_name: $("name").value, text }) });
  }
  $("leadtext").value = "";
}
async function refreshLead() {
  const channel = current();
  if (!channel) return;
  const lead = $("lead").value.trim();
  let items = [];
  if (channel.kind === "whatsapp") {
    const out = await api("/sandbox/whatsapp/outbox?to=" + encodeURIComponent(lead));
    items = out.map((m) => ({ text: m.text || "[" + m.type + "]", meta: m.status }));
  } else {
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
$("leadsend").onclick = () => leadSend().catch((e) => { $("status").textContent = e.message; });
$("leadtext").onkeydown = (e) => { if (e.key === "Enter") $("leadsend").onclick(); };
$("reply").onclick = reply;
$("replytext").onkeydown = (e) => { if (e.key === "Enter") reply(); };
setInterval(() => {
  if (!state.key) return;
  refreshLead().catch(() => {});
  refreshCrm().catch(() => {});
}, 1000);
if (state.key) connect();
</script>
</body>
</html>
"""


@router.get("/sandbox", response_class=HTMLResponse, include_in_schema=False)
async def sandbox_page() -> HTMLResponse:
    """The sandbox page: one side plays the lead, the other shows the CRM inbox."""
    return HTMLResponse(PAGE)
