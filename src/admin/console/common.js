// coap-gateway console, shared by its three pages: the admin token, API calls, the live event
// stream, and drawing helpers. Plain DOM with text nodes only (never parsed as markup):
// endpoint names, sectors and link attributes come from devices.
"use strict";

// The admin token, when the gateway has one: asked for on the first 401, kept in this tab's
// sessionStorage (gone when the tab closes), sent as a bearer header on every API fetch and
// never put in a URL.
const TOKEN_KEY = "coap-gateway-admin-token";
let waitingForToken = false;
// Called when a token was entered: the page reloads its data.
let onToken = () => {};

// The gateway answered, with an error status and its message.
class Refused extends Error {}

class NeedToken extends Error {
  constructor(rejected) {
    super("the admin API needs its token");
    this.rejected = rejected;
  }
}

function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
}

function authHeaders() {
  const token = storedToken();
  return token ? { "Authorization": "Bearer " + token } : {};
}

// Call an API path; answers its JSON (null for 204). A 401 throws NeedToken; any other error
// status throws an Error with the API's message.
async function api(path, method, body) {
  const headers = authHeaders();
  const init = { cache: "no-store", headers: headers, method: method || "GET" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) throw new NeedToken(storedToken() !== null);
  if (r.status === 204) return null;
  const json = await r.json();
  // /health answers 503 with its JSON when the registry cannot write: still data.
  if (!r.ok && path !== "/health") throw new Refused(json.error || ("HTTP " + r.status));
  return json;
}

// Show the token form; the page's reads pause until it is submitted.
function askForToken(rejected) {
  if (rejected) {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing stored */ }
  }
  waitingForToken = true;
  text("error", "");
  text("token-message", rejected ? "the gateway refused that token" : "");
  document.getElementById("token-form").hidden = false;
  document.getElementById("token-input").focus();
}

document.getElementById("token-form").addEventListener("submit", ev => {
  ev.preventDefault();
  const input = document.getElementById("token-input");
  const token = input.value.trim();
  input.value = "";
  if (!token) return;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch (e) {
    text("token-message", "this browser keeps no session storage: " + e);
    return;
  }
  document.getElementById("token-form").hidden = true;
  waitingForToken = false;
  onToken();
});

// What a failed read shows.
function failed(e) {
  if (e instanceof NeedToken) askForToken(e.rejected);
  else if (e instanceof Refused) text("error", "the gateway refused: " + e.message);
  else text("error", "cannot reach the gateway: " + e.message);
}

// The registry's events (GET /api/events, server-sent events) read with fetch, because an
// EventSource cannot send the token. `onEvent(frame)` for each event, `onOpen()` on every
// (re)connect (a page re-reads what it shows then: events missed while away are not replayed).
// Reconnects after the stream's `retry`, backing off to 30 s while the gateway is away.
function followEvents(onEvent, onOpen) {
  let retryMs = 2000;
  let failures = 0;
  async function connect() {
    if (waitingForToken) { setTimeout(connect, 1000); return; }
    try {
      const r = await fetch("/api/events", { cache: "no-store", headers: authHeaders() });
      if (r.status === 401) throw new NeedToken(storedToken() !== null);
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      failures = 0;
      onOpen();
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
            else if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("retry:")) retryMs = Number(line.slice(6)) || retryMs;
          }
          if (name === "resync") onOpen();
          else if (data.length) {
            try { onEvent(JSON.parse(data.join("\n"))); } catch (e) { /* not JSON: skip */ }
          }
        }
      }
    } catch (e) {
      if (e instanceof NeedToken) askForToken(e.rejected);
      failures += 1;
    }
    setTimeout(connect, Math.min(30000, retryMs * Math.max(1, failures)));
  }
  connect();
}

function text(id, value, cls) {
  const el = document.getElementById(id);
  el.textContent = value;
  if (cls !== undefined) el.className = cls;
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function element(tag, value, cls) {
  const el = document.createElement(tag);
  if (value !== undefined) el.textContent = value;
  if (cls) el.className = cls;
  return el;
}

// The device page's address for a device (ep and d as query values, encoded).
function deviceHref(ep, d) {
  let href = "/device?ep=" + encodeURIComponent(ep);
  if (d !== null && d !== undefined) href += "&d=" + encodeURIComponent(d);
  return href;
}

// A link object of the device object (docs/platform-protocol.md) as link-format-like text.
function linkText(link) {
  const attrs = [];
  for (const name of ["rt", "if", "ct"]) {
    if (link[name] !== null && link[name] !== undefined) attrs.push(name + "=" + link[name]);
  }
  if (link.obs) attrs.push("obs");
  for (const [name, value] of Object.entries(link.attrs || {})) {
    attrs.push(value === true ? name : name + "=" + value);
  }
  return "<" + link.href + ">" + (attrs.length ? ";" + attrs.join(";") : "");
}

// A small line chart as SVG: `points` are [x, y] pairs. No library: a polyline scaled into the
// box, and the y range as a title.
function sparkline(points, width, height) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("class", "chart");
  if (points.length === 0) return svg;
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x1 > x0 ? (width - 4) / (x1 - x0) : 0;
  const sy = y1 > y0 ? (height - 4) / (y1 - y0) : 0;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map(([x, y]) =>
    (2 + (x - x0) * sx).toFixed(1) + "," + (height - 2 - (y - y0) * sy).toFixed(1)).join(" "));
  svg.appendChild(line);
  const title = document.createElementNS(ns, "title");
  title.textContent = "min " + y0 + ", max " + y1;
  svg.appendChild(title);
  return svg;
}
