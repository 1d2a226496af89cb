
// The gateway page (GET /gateway): listeners, devices by status, the platform link's state,
// what it owes and how often it reconnected, and the last hour of RD activity as charts, from
// /api/gateway every POLL_MS (one small JSON; the page reads nothing else).

const POLL_MS = 5000;

function facts(id, rows) {
  const table = document.getElementById(id);
  table.replaceChildren(...rows.map(([name, value, cls]) => {
    const tr = document.createElement("tr");
    tr.appendChild(element("th", name));
    const td = element("td", String(value), cls);
    td.dataset.fact = name;
    tr.appendChild(td);
    return tr;
  }));
}

function chart(name, points) {
  const figure = element("figure", undefined, "chart-box");
  const latest = points.length ? points[points.length - 1][1] : 0;
  const peak = points.reduce((max, p) => Math.max(max, p[1]), 0);
  figure.appendChild(element("figcaption",
    name + ": " + latest.toFixed(1) + "/s now, peak " + peak.toFixed(1) + "/s"));
  figure.appendChild(sparkline(points, 360, 60));
  return figure;
}

function draw(g) {
  text("title", "gateway " + g.listeners.gateway_id);
  const listeners = g.listeners.coap.slice();
  if (g.listeners.admin) listeners.push(g.listeners.admin);
  document.getElementById("listeners").replaceChildren(...listeners.map(l => element("li", l)));
  facts("devices", [
    ["registered", g.devices.all],
    ["connected", g.devices.connected, "up"],
    ["disconnected", g.devices.disconnected, g.devices.disconnected ? "down" : ""],
  ]);
  const p = g.platform;
  if (!p.configured) facts("platform", [["link", "not configured (platform.url is empty)"]]);
  else if (!p.answered) facts("platform", [["link", "did not answer", "down"]]);
  else facts("platform", [
    ["link", p.connected ? "connected" : "disconnected", p.connected ? "up" : "down"],
    ["delivery", p.acked_mode ? "acknowledged (1.1)" : "unacknowledged (1.0)"],
    ["owed frames", p.owed_frames],
    ["owed bytes", p.owed_bytes],
    ["oldest owed", p.oldest_owed_ms ? Math.round(p.oldest_owed_ms / 1000) + " s" : "none"],
    ["last acknowledged", p.last_ack],
    ["connects", p.connects],
    ["reconnects", p.reconnects],
    ["dial attempts", p.dial_attempts],
    ["refused (401/403)", p.auth_failures],
    ["frames sent", p.frames_sent],
    ["data dropped", p.dropped_data],
    ["events dropped", p.dropped_events],
  ]);
  const a = g.activity;
  text("activity-note", a.length === 0
    ? "collecting: one sample every " + g.activity_interval_s + " s" : "");
  const series = key => a.map(r => [r.at_ms, r[key]]);
  document.getElementById("charts").replaceChildren(
    chart("registrations", series("registrations_per_s")),
    chart("updates", series("updates_per_s")),
    chart("lookups", series("lookups_per_s")));
  document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
}

async function load() {
  if (waitingForToken) return;
  try {
    draw(await api("/api/gateway"));
    text("error", "");
  } catch (e) {
    failed(e);
  }
}

onToken = load;
load();
setInterval(load, POLL_MS);
