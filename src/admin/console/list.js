
// The device list (GET /): one page of /api/devices with the search, filters and sort the form
// sets; redrawn when the registry's event stream says something changed (at most every
// REFRESH_MS), never by polling the table. /health is polled every POLL_MS for the summary.

const POLL_MS = 2000;
const REFRESH_MS = 500;
const PAGE = 100;
let polls = 0;
let page = 1;
let lastTotal = 0;
let refreshTimer = null;

function query() {
  const params = new URLSearchParams();
  const q = document.getElementById("search").value.trim();
  const status = document.getElementById("status-filter").value;
  const sector = document.getElementById("sector").value.trim();
  const sort = document.getElementById("sort").value;
  if (q) params.set("q", q);
  if (status) params.set("status", status);
  if (sector) params.set("d", sector);
  if (sort) params.set("sort", sort);
  params.set("count", String(PAGE));
  // The API counts pages from 0.
  params.set("page", String(page - 1));
  // The RD's own lookup filters (RFC 9176 §6.2), as its lookup interface takes them:
  // `name=value`, `name=prefix*`, or a bare `name` for "has it" (which URLSearchParams cannot
  // write: it would add "="); space-separated.
  const filters = document.getElementById("rd-filter").value.split(/\s+/).filter(i => i)
    .map(item => {
      const eq = item.indexOf("=");
      return eq < 0 ? encodeURIComponent(item)
        : encodeURIComponent(item.slice(0, eq)) + "=" + encodeURIComponent(item.slice(eq + 1));
    });
  return "/api/devices?" + [params.toString(), ...filters].join("&");
}

function drawDevices(result) {
  const body = document.getElementById("devices");
  const rows = result.devices.map(d => {
    const tr = document.createElement("tr");
    tr.className = "device";
    tr.dataset.ep = d.ep;
    tr.dataset.status = String(d.status);
    const name = cell(tr, "", "ep");
    const a = element("a", d.ep);
    a.href = deviceHref(d.ep, d.d);
    name.appendChild(a);
    cell(tr, d.d === null ? "" : d.d, "d");
    cell(tr, d.status === 1 ? "up" : "down", "status " + (d.status === 1 ? "up" : "down"));
    const seen = cell(tr, ago(Date.parse(d.seen_at)), "seen");
    seen.title = d.seen_at;
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
  lastTotal = result.total;
  const first = result.total === 0 ? 0 : (page - 1) * PAGE + 1;
  text("more", result.total === 0 ? "no device matches"
    : "showing " + first + "–" + ((page - 1) * PAGE + result.devices.length) + " of " +
      result.total + " devices (page " + page + " of " + Math.max(1, Math.ceil(result.total / PAGE)) + ")");
  document.getElementById("prev").disabled = page <= 1;
  document.getElementById("next").disabled = page * PAGE >= result.total;
  text("count-connected", String(result.counts.connected));
  text("count-disconnected", String(result.counts.disconnected));
}

function drawHealth(h) {
  text("gateway-status", h.status, h.status === "up" ? "up" : "down");
  text("registrations", String(h.registrations));
  if (!h.platform.configured) text("platform", "not configured", "");
  else text("platform", h.platform.connected ? "connected" : "disconnected",
            h.platform.connected ? "up" : "down");
}

async function refresh() {
  refreshTimer = null;
  if (waitingForToken) return;
  try {
    drawDevices(await api(query()));
    text("error", "");
    text("updated", "updated " + new Date().toLocaleTimeString());
    // For tests and the console benchmark: how many reads were drawn, the last one when.
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    document.body.dataset.drawnMs = performance.now().toFixed(1);
  } catch (e) {
    failed(e);
  }
}

// Something changed: redraw the page shown, at most every REFRESH_MS.
function refreshSoon() {
  if (refreshTimer === null) refreshTimer = setTimeout(refresh, REFRESH_MS);
}

// A status change of a row on screen is drawn at once, before the page is re-read.
function onEvent(frame) {
  if (frame.type === "device_status") {
    // The counts move at once too; the re-read below sets them exactly.
    const up = document.getElementById("count-connected");
    const down = document.getElementById("count-disconnected");
    if (up.textContent !== "" && down.textContent !== "") {
      const delta = frame.status === 1 ? 1 : -1;
      up.textContent = String(Math.max(0, Number(up.textContent) + delta));
      down.textContent = String(Math.max(0, Number(down.textContent) - delta));
    }
    for (const tr of document.querySelectorAll("tr.device")) {
      if (tr.dataset.ep !== frame.ep) continue;
      tr.dataset.status = String(frame.status);
      const td = tr.querySelector("td.status");
      td.textContent = frame.status === 1 ? "up" : "down";
      td.className = "status " + (frame.status === 1 ? "up" : "down");
    }
  }
  refreshSoon();
}

async function poll() {
  if (waitingForToken) return;
  try {
    drawHealth(await api("/health"));
    // Completed polls, for whoever checks that the page keeps itself current.
    document.body.dataset.polls = String(++polls);
  } catch (e) {
    failed(e);
  }
}

let typing = null;
document.getElementById("search").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => { page = 1; refresh(); }, 150);
});
for (const id of ["status-filter", "sector", "sort", "rd-filter"]) {
  document.getElementById(id).addEventListener("change", () => { page = 1; refresh(); });
}
document.getElementById("filters").addEventListener("submit", ev => { ev.preventDefault(); page = 1; refresh(); });
document.getElementById("prev").addEventListener("click", () => { if (page > 1) { page -= 1; refresh(); } });
document.getElementById("next").addEventListener("click", () => {
  if (page * PAGE < lastTotal) { page += 1; refresh(); }
});

onToken = () => { poll(); refresh(); };
poll();
refresh();
setInterval(poll, POLL_MS);
// On every (re)connect of the stream the page is read again: changes made while it was away
// are not replayed.
followEvents(onEvent, refreshSoon);
