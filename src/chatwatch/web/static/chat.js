"use strict";
const log = document.getElementById("log"), statusEl = document.getElementById("status");
const actions = document.getElementById("actions");
let ws, seq = 0, pending = {}, retry = 500;
const LABELS = {pricing: "Pricing", services: "Services", book_consultation: "Book a consultation",
                talk_to_human: "Talk to a human", contact: "Contact"};

function bubble(cls, text) {
  const div = document.createElement("div");
  div.className = "msg " + cls; div.textContent = text;
  log.appendChild(div); log.scrollTop = log.scrollHeight; return div;
}
function showActions(list) {
  actions.replaceChildren();
  for (const a of list || []) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = LABELS[a] || a;
    b.onclick = () => send({type: "quick_action", action: a}, LABELS[a] || a);
    actions.appendChild(b);
  }
}
function send(frame, shown) {
  if (!ws || ws.readyState !== 1) { bubble("error", "Not connected yet — try again in a moment."); return; }
  frame.id = "m" + (++seq);
  bubble("user", shown);
  ws.send(JSON.stringify(frame));
}
async function token() {
  let t = sessionStorage.getItem("cw_token");
  if (t) return t;
  const r = await fetch("/api/v1/auth/guest", {method: "POST"});
  if (!r.ok) throw new Error("guest login failed: " + r.status);
  t = (await r.json()).token; sessionStorage.setItem("cw_token", t); return t;
}
async function connect() {
  let t;
  try { t = await token(); } catch (e) { statusEl.textContent = String(e); setTimeout(connect, retry); return; }
  const sid = sessionStorage.getItem("cw_session");
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws/chat?token=${encodeURIComponent(t)}` + (sid ? `&session_id=${encodeURIComponent(sid)}` : ""));
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.type === "connected") {
      sessionStorage.setItem("cw_session", f.session_id); retry = 500;
      statusEl.textContent = (f.resumed ? "reconnected" : "connected") + " · session " + f.session_id;
      if (!f.resumed && !log.children.length) { bubble("ai", "Hello! I'm the AI consultant. How can I help?"); showActions(["services", "pricing", "book_consultation", "talk_to_human"]); }
    } else if (f.type === "ai_delta") {
      (pending[f.reply_to] ||= bubble("ai", "")).textContent += f.delta; log.scrollTop = log.scrollHeight;
    } else if (f.type === "ai_message") {
      const b = pending[f.reply_to] || bubble("ai", ""); delete pending[f.reply_to];
      b.textContent = f.content;
      const m = document.createElement("div"); m.className = "meta";
      m.textContent = `${f.model} · ${f.usage.input_tokens}+${f.usage.output_tokens} tokens · ${Math.round(f.latency_ms)} ms${f.cached ? " · cached" : ""}`;
      b.appendChild(m); showActions(f.quick_actions);
    } else if (f.type === "error") {
      bubble("error", `${f.message} (code ${f.code}, ref ${f.correlation_id})`);
    } else if (f.type === "broadcast") {
      bubble("ai", "📣 " + f.message);
    }
  };
  ws.onclose = (ev) => {
    if (ev.code === 4401) { sessionStorage.removeItem("cw_token"); }
    statusEl.textContent = "disconnected — reconnecting…";
    setTimeout(connect, retry); retry = Math.min(retry * 2, 10000);
  };
}
document.getElementById("form").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text"), text = input.value.trim();
  if (text) { send({type: "message", content: text}, text); input.value = ""; }
};
connect();
