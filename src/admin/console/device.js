
// The device page (GET /device?ep=&d=): registration, latest values with sparklines, status
// history and links from /api/devices/{ep}/detail, re-read when the event stream names this
// device; actions (a CoAP request through the Executer, removing the registration) need the
// admin token and are refused by the gateway without one.

const params = new URLSearchParams(location.search);
const ep = params.get("ep") || "";
const sector = params.get("d");
const sectorQuery = sector !== null && sector !== "" ? "?d=" + encodeURIComponent(sector) : "";
const base = "/api/devices/" + encodeURIComponent(ep);
let reloadTimer = null;

function fact(table, name, value) {
  const tr = document.createElement("tr");
  tr.appendChild(element("th", name));
  const td = element("td", value === null || value === undefined ? "" : String(value));
  td.dataset.fact = name;
  tr.appendChild(td);
  table.appendChild(tr);
  return td;
}

function draw(d) {
  text("title", d.ep + (d.d ? " (" + d.d + ")" : ""));
  document.title = "coap-gateway: " + d.ep;
  const reg = document.getElementById("registration");
  reg.replaceChildren();
  const status = fact(reg, "status", d.status === 1 ? "up (1)" : "down (0)");
  status.className = d.status === 1 ? "up" : "down";
  status.id = "status";
  document.body.dataset.status = String(d.status);
  fact(reg, "endpoint", d.ep);
  fact(reg, "sector", d.d === null ? "(none)" : d.d);
  fact(reg, "base", d.base);
  fact(reg, "lifetime", d.lt + " s");
  fact(reg, "registered", d.registered_at);
  fact(reg, "updated", d.updated_at);
  fact(reg, "expires", d.expires_at);
  fact(reg, "last seen", d.seen_at + " (" + ago(Date.parse(d.seen_at)) + ")");
  fact(reg, "source", d.source === undefined ? "" : d.source);
  fact(reg, "DTLS identity", typeof d.dtls_identity === "string" ? d.dtls_identity : "(plain CoAP)");

  const readings = document.getElementById("readings-body");
  readings.replaceChildren(...d.readings.map(r => {
    const tr = document.createElement("tr");
    tr.className = "reading";
    tr.dataset.path = r.path;
    cell(tr, r.path, "mono");
    cell(tr, r.text + (r.truncated ? "…" : ""), "value mono");
    cell(tr, r.code);
    cell(tr, ago(Date.parse(r.at))).title = r.at;
    const spark = cell(tr, "");
    spark.appendChild(sparkline(r.recent, 120, 24));
    return tr;
  }));
  text("readings-note", !d.observed
    ? "no Observer runs on this gateway (it needs platform.url), so no values are collected"
    : d.readings.length === 0 ? "no value received yet" : "");

  const history = document.getElementById("history-body");
  history.replaceChildren(...d.status_history.slice().reverse().map(c => {
    const tr = document.createElement("tr");
    tr.className = "change";
    tr.dataset.status = String(c.status);
    cell(tr, c.at + " (" + ago(Date.parse(c.at)) + ")");
    cell(tr, c.status === 1 ? "up (1)" : "down (0)", c.status === 1 ? "up" : "down");
    return tr;
  }));
  if (d.status_history.length === 0) {
    const tr = document.createElement("tr");
    cell(tr, "no change since it registered").colSpan = 2;
    history.appendChild(tr);
  }

  const links = document.getElementById("links");
  const paths = document.getElementById("paths");
  links.replaceChildren(...d.links.map(l => element("li", linkText(l))));
  paths.replaceChildren(...d.links.map(l => { const o = element("option"); o.value = l.href; return o; }));

  const allowed = d.actions;
  for (const id of ["method", "path", "payload", "send", "remove"]) {
    document.getElementById(id).disabled = !allowed;
  }
  text("actions-note", allowed ? "" :
    "actions need the gateway's admin token (http.token_file): this console is read-only");
  document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
}

async function load() {
  reloadTimer = null;
  if (waitingForToken) return;
  try {
    draw(await api(base + "/detail" + sectorQuery));
    text("error", "");
  } catch (e) {
    failed(e);
  }
}

function loadSoon() {
  if (reloadTimer === null) reloadTimer = setTimeout(load, 300);
}

document.getElementById("request-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const body = { method: document.getElementById("method").value,
                 path: document.getElementById("path").value.trim() };
  const payload = document.getElementById("payload").value;
  if (payload !== "" && body.method !== "GET" && body.method !== "DELETE") body.payload = payload;
  text("result", "sending " + body.method + " " + body.path + " …", "mono");
  try {
    const r = await api(base + "/request" + sectorQuery, "POST", body);
    const out = r.error
      ? "failed: " + r.error.kind + ": " + r.error.message
      : r.code + " in " + r.rtt_ms + " ms" + (r.payload !== undefined ? "\n" + r.payload : "");
    text("result", out, "mono " + (r.error ? "down" : "done"));
    loadSoon();
  } catch (e) {
    if (e instanceof NeedToken) askForToken(e.rejected);
    text("result", "refused: " + e.message, "mono down");
  }
});

document.getElementById("remove").addEventListener("click", async () => {
  if (!confirm("Remove the registration of " + ep + "? The device registers again on its own, if it can.")) return;
  try {
    await api(base + sectorQuery, "DELETE");
    text("result", "registration removed", "mono done");
    document.getElementById("remove").disabled = true;
  } catch (e) {
    if (e instanceof NeedToken) askForToken(e.rejected);
    text("result", "refused: " + e.message, "mono down");
  }
});

onToken = load;
load();
followEvents(frame => { if (frame.ep === ep) loadSoon(); }, loadSoon);
