// coap-gateway status page: polls /health and /api/devices every 2 s and redraws; asks for
// the admin token when the API answers 401.
// Plain DOM, text nodes only (never parsed as markup): device data comes from the network.
"use strict";

const POLL_MS = 2000;
const PAGE = 1000;
let polls = 0;

// The admin token, when the gateway has one: asked for on the first 401, kept in this tab's
// sessionStorage (gone when the tab closes), sent as a bearer header on every API fetch and
// never put in a URL.
const TOKEN_KEY = "coap-gateway-admin-token";
let waitingForToken = false;

class NeedToken extends Error {
  constructor(rejected) {
    super("the admin API needs its token");
    this.rejected = rejected;
  }
}

function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
}

// GET an API path as JSON, with the bearer when there is one; a 401 throws NeedToken.
async function api(path) {
  const token = storedToken();
  const headers = token ? { "Authorization": "Bearer " + token } : {};
  const r = await fetch(path, { cache: "no-store", headers: headers });
  if (r.status === 401) throw new NeedToken(token !== null);
  return r.json();
}

// Show the token form; polling pauses until it is submitted.
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
  poll();
});

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

function drawDevices(page) {
  const body = document.getElementById("devices");
  const rows = page.devices.map(d => {
    const tr = document.createElement("tr");
    tr.className = "device";
    tr.dataset.ep = d.ep;
    tr.dataset.status = String(d.status);
    cell(tr, d.ep, "ep");
    cell(tr, d.d === null ? "" : d.d, "d");
    cell(tr, d.status === 1 ? "up" : "down", "status " + (d.status === 1 ? "up" : "down"));
    const seen = cell(tr, ago(Date.parse(d.updated_at)), "seen");
    seen.title = d.updated_at;
    cell(tr, d.expires_at, "expires");
    cell(tr, d.base, "base");
    // Made over DTLS: the identity it belongs to (null over plain CoAP). Text, never markup.
    cell(tr, typeof d.dtls_identity === "string" ? d.dtls_identity : "", "identity");
    const links = cell(tr, "", "links");
    d.links.forEach((l, i) => {
      if (i > 0) links.appendChild(document.createElement("br"));
      links.appendChild(document.createTextNode(linkText(l)));
    });
    return tr;
  });
  body.replaceChildren(...rows);
  text("more", page.total > page.devices.length
    ? "showing " + page.devices.length + " of " + page.total + " devices" : "");
}

function drawHealth(h) {
  text("gateway-status", h.status, h.status === "up" ? "up" : "down");
  text("registrations", String(h.registrations));
  if (!h.platform.configured) text("platform", "not configured", "");
  else text("platform", h.platform.connected ? "connected" : "disconnected",
            h.platform.connected ? "up" : "down");
}

async function poll() {
  if (waitingForToken) return;
  try {
    // /health answers 503 with the same JSON when the registry cannot write.
    const health = await api("/health");
    drawHealth(health);
    const page = await api("/api/devices?count=" + PAGE);
    drawDevices(page);
    text("error", "");
    text("updated", "updated " + new Date().toLocaleTimeString());
    // Completed polls, for whoever checks that the page keeps itself current.
    document.body.dataset.polls = String(++polls);
  } catch (e) {
    if (e instanceof NeedToken) askForToken(e.rejected);
    else text("error", "cannot reach the gateway: " + e);
  }
}

poll();
setInterval(poll, POLL_MS);
