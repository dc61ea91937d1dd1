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
