// coap-gateway status page: polls /health and /api/devices every 2 s and redraws.
// Plain DOM, text nodes only (never parsed as markup): device data comes from the network.
"use strict";

const POLL_MS = 2000;
const PAGE = 1000;
let polls = 0;

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
  try {
    // /health answers 503 with the same JSON when the registry cannot write.
    const health = await fetch("/health", { cache: "no-store" }).then(r => r.json());
    drawHealth(health);
    const page = await fetch("/api/devices?count=" + PAGE, { cache: "no-store" })
      .then(r => r.json());
    drawDevices(page);
    text("error", "");
    text("updated", "updated " + new Date().toLocaleTimeString());
    // Completed polls, for whoever checks that the page keeps itself current.
    document.body.dataset.polls = String(++polls);
  } catch (e) {
    text("error", "cannot reach the gateway: " + e);
  }
}

poll();
setInterval(poll, POLL_MS);
