//! The admin HTTP API (issue 12) of the real gateway binary, over real sockets on 127.0.0.1:
//! devices register over CoAP (the independent test peer, or the `device-sim` binary), and the
//! tests read them back through `GET /health`, `GET /metrics` (parsed with the independent
//! `prometheus-parse` crate), `GET /api/devices[/{ep}]` with the RD's filter syntax and paging,
//! and `rd-dump --url`. Also: bad queries are 400 naming the parameter, unknown devices 404,
//! and SIGTERM stops the gateway cleanly with the server running.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::device_sim::DeviceSim;
use common::http::{get, HttpResponse};
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// Register `ep` (optionally in sector `d`) from a fresh socket with one link of type `rt`.
fn register_device(gw: &Gateway, ep: &str, d: Option<&str>, rt: &str) -> Peer {
    let peer = Peer::new(gw.addr());
    let sector = d.map(|d| format!("&d={d}")).unwrap_or_default();
    register(
        &peer,
        &format!("ep={ep}{sector}&lt=300&et=test.node"),
        &format!("</sensors/{rt}>;rt=\"{rt}\";obs,</info>;ct=0"),
    );
    peer
}

fn json_ok(addr: SocketAddr, uri: &str) -> Value {
    let resp = get(addr, uri);
    assert_eq!(resp.status, 200, "GET {uri}: {}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    resp.json()
}

/// The `ep`s of a device page, in the order served.
fn eps(page: &Value) -> Vec<String> {
    page["devices"]
        .as_array()
        .expect("devices array")
        .iter()
        .map(|d| d["ep"].as_str().expect("ep").to_string())
        .collect()
}

fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let resp = get(addr, "/metrics");
    assert_eq!(resp.status, 200);
    let ct = resp.header("content-type").expect("content-type");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("metrics do not parse ({e}):\n{text}"))
}

/// The value of the sample `metric` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {metric}{labels:?}"));
    match found.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{metric} is not a scalar: {other:?}"),
    }
}

fn api_error(resp: &HttpResponse, status: u16, parameter: Option<&str>) {
    assert_eq!(resp.status, status, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    match parameter {
        Some(p) => assert_eq!(body["parameter"], p, "{body}"),
        None => assert!(body.get("parameter").is_none(), "{body}"),
    }
}

fn wait_until(budget: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < budget, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn startup_logs_every_listener_and_sigterm_stops_cleanly() {
    let mut gw = Gateway::start_with_http(GatewayOptions::default());
    let http = gw.http_addr();
    assert!(http.ip().is_loopback() && http.port() != 0, "{http}");
    let log = gw.log_text();
    assert!(log.contains(&format!("rd listening on udp://{}", gw.addr())));
    assert!(log.contains(&format!("admin http listening on http://{http}")));
    // The server answers right after the line.
    assert_eq!(get(http, "/health").status, 200);
    let t0 = Instant::now();
    assert_eq!(gw.terminate(), Some(0), "{}", gw.log_text());
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert!(std::net::TcpStream::connect_timeout(&http, Duration::from_secs(1)).is_err());
}

#[test]
fn shutdown_is_bounded_even_with_a_client_stuck_mid_request() {
    use std::io::Write;
    let mut gw = Gateway::start_with_http(GatewayOptions::default());
    let mut stuck = std::net::TcpStream::connect(gw.http_addr()).unwrap();
    // Half a request head, never finished; and an idle keep-alive connection.
    stuck
        .write_all(b"GET /api/devices HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let _idle = std::net::TcpStream::connect(gw.http_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    assert_eq!(gw.terminate(), Some(0), "{}", gw.log_text());
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        t0.elapsed()
    );
}

#[test]
fn http_disabled_by_default_in_tests_logs_so() {
    let gw = Gateway::start();
    assert!(gw.wait_for_log("admin http disabled", WAIT));
    assert!(!gw.log_text().contains("admin http listening"));
}

#[test]
fn health_is_up_with_the_registry_size_and_no_platform() {
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let http = gw.http_addr();
    let health = json_ok(http, "/health");
    assert_eq!(health["status"], "up");
    assert_eq!(health["registrations"], 0);
    assert_eq!(health["registry"]["writable"], true);
    assert_eq!(health["platform"]["configured"], false);
    assert_eq!(health["platform"]["connected"], false);
    let _a = register_device(&gw, "h1", None, "temp");
    let _b = register_device(&gw, "h2", None, "temp");
    let health = json_ok(http, "/health");
    assert_eq!(health["registrations"], 2, "{health}");
}

#[test]
fn health_follows_the_platform_link() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with_http(GatewayOptions {
        extra_yaml: format!("platform:\n  url: {:?}\n  reconnect_max_s: 1\n", sim.url()),
        ..Default::default()
    });
    let http = gw.http_addr();
    sim.wait_type("hello", None, WAIT).expect("hello");
    wait_until(WAIT, "platform connected in /health", || {
        json_ok(http, "/health")["platform"]["connected"] == true
    });
    let health = json_ok(http, "/health");
    assert_eq!(health["platform"]["configured"], true);
    assert_eq!(health["status"], "up");
    // The link's state is in the metrics too.
    assert_eq!(
        sample(&scrape(http), "coap_gateway_platform_connected", &[]),
        1.0
    );
    drop(sim);
    wait_until(WAIT, "platform disconnected in /health", || {
        json_ok(http, "/health")["platform"]["connected"] == false
    });
    // A lost platform is reported, not fatal.
    assert_eq!(get(http, "/health").status, 200);
}

#[test]
fn metrics_parse_and_count_registrations_and_removals() {
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let http = gw.http_addr();
    let before = scrape(http);
    assert_eq!(sample(&before, "coap_gateway_registrations", &[]), 0.0);
    let peers: Vec<Peer> = (0..5)
        .map(|i| register_device(&gw, &format!("m{i}"), None, "temp"))
        .collect();
    let after = scrape(http);
    assert_eq!(sample(&after, "coap_gateway_registrations", &[]), 5.0);
    assert_eq!(
        sample(&after, "coap_gateway_devices", &[("status", "1")]),
        5.0
    );
    assert_eq!(
        sample(&after, "coap_gateway_devices", &[("status", "0")]),
        0.0
    );
    // No platform configured: no platform gauge.
    assert!(!after
        .samples
        .iter()
        .any(|s| s.metric == "coap_gateway_platform_connected"));
    let reg = lookup(&peers[0], "/rd-lookup/ep?ep=m0");
    let resp = peers[0].delete(&reg[0].target);
    assert_eq!(resp.code, "2.02");
    assert_eq!(
        sample(&scrape(http), "coap_gateway_registrations", &[]),
        4.0
    );
}

#[test]
fn device_api_lists_filters_and_pages_like_the_rd() {
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let http = gw.http_addr();
    let mut peers = Vec::new();
    for i in 1..=5 {
        peers.push(register_device(&gw, &format!("lamp-{i}"), None, "light"));
    }
    for i in 1..=3 {
        peers.push(register_device(
            &gw,
            &format!("temp-{i}"),
            Some("floor2"),
            "temperature",
        ));
    }

    let all = json_ok(http, "/api/devices");
    assert_eq!(all["total"], 8);
    assert_eq!(all["page"], 0);
    assert_eq!(
        eps(&all),
        ["lamp-1", "lamp-2", "lamp-3", "lamp-4", "lamp-5", "temp-1", "temp-2", "temp-3"]
    );
    // Every field of a device, checked against what was registered.
    let first = &all["devices"][0];
    let base = format!("coap://{}", peers[0].local_addr());
    assert_eq!(first["base"], base.as_str());
    assert_eq!(first["source"], peers[0].local_addr().to_string().as_str());
    assert_eq!(first["d"], Value::Null);
    assert_eq!(first["lt"], 300);
    assert_eq!(first["status"], 1);
    assert!(first["location"].as_str().unwrap().starts_with("/reg/"));
    // Times are RFC 3339 with milliseconds, like the platform frames: equal-length strings
    // compare in time order.
    let registered = first["registered_at"].as_str().unwrap();
    let updated = first["updated_at"].as_str().unwrap();
    let expires = first["expires_at"].as_str().unwrap();
    assert!(
        registered.ends_with('Z') && registered <= updated && updated < expires,
        "{first}"
    );
    assert_eq!(first["et"], "test.node");
    assert_eq!(first["attrs"], serde_json::json!({}));
    assert_eq!(
        first["links"],
        serde_json::json!([
            {"href": "/sensors/light", "rt": "light", "if": null, "ct": null, "obs": true,
             "attrs": {}},
            {"href": "/info", "rt": null, "if": null, "ct": "0", "obs": false, "attrs": {}}
        ])
    );
    assert_eq!(all["devices"][5]["d"], "floor2");

    // The RD's filter syntax: exact, prefix, sector, endpoint attribute, link attribute
    // (cross-matching), presence, status, percent-encoding.
    let cases: [(&str, &[&str]); 9] = [
        (
            "rt=light",
            &["lamp-1", "lamp-2", "lamp-3", "lamp-4", "lamp-5"],
        ),
        ("rt=temp*", &["temp-1", "temp-2", "temp-3"]),
        ("d=floor2&ep=temp-2", &["temp-2"]),
        ("ep=lamp-4", &["lamp-4"]),
        ("obs&rt=temperature", &["temp-1", "temp-2", "temp-3"]),
        ("ep=temp%2D2", &["temp-2"]),
        ("et=test.node&rt=light&ep=lamp-1", &["lamp-1"]),
        ("status=0", &[]),
        ("ct=0&ep=temp-3", &["temp-3"]),
    ];
    for (query, want) in cases {
        let page = json_ok(http, &format!("/api/devices?{query}"));
        assert_eq!(eps(&page), want, "?{query}");
        assert_eq!(page["total"], want.len(), "?{query}");
    }
    // The same filter through the RD's own lookup agrees.
    let rd: BTreeSet<String> = lookup(&peers[0], "/rd-lookup/ep?rt=temp*")
        .iter()
        .filter_map(|l| l.get("ep").map(str::to_string))
        .collect();
    let api: BTreeSet<String> = eps(&json_ok(http, "/api/devices?rt=temp*"))
        .into_iter()
        .collect();
    assert_eq!(rd, api);

    // Paging: pages of 3 partition the 8 devices, total stays 8.
    let mut seen = Vec::new();
    for page in 0..4 {
        let p = json_ok(http, &format!("/api/devices?count=3&page={page}"));
        assert_eq!(p["total"], 8);
        assert_eq!(p["count"], 3);
        let got = eps(&p);
        assert_eq!(got.len(), [3, 3, 2, 0][page], "page {page}");
        seen.extend(got);
    }
    assert_eq!(seen, eps(&all));
    // Paging applies after filtering.
    let p = json_ok(http, "/api/devices?rt=light&count=2&page=2");
    assert_eq!(
        (eps(&p), p["total"].clone()),
        (vec!["lamp-5".into()], 5.into())
    );

    // One device, by ep and optionally sector.
    let one = json_ok(http, "/api/devices/lamp-2");
    assert_eq!(one, all["devices"][1]);
    let one = json_ok(http, "/api/devices/temp-1?d=floor2");
    assert_eq!(one["ep"], "temp-1");
    assert_eq!(one["d"], "floor2");
}

#[test]
fn device_api_searches_sorts_and_counts_for_the_console() {
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let http = gw.http_addr();
    let mut peers = Vec::new();
    for ep in ["Pump-North", "pump-south", "valve-1", "valve-2"] {
        peers.push(register_device(&gw, ep, None, "light"));
    }
    peers.push(register_device(&gw, "meter", Some("Pumphouse"), "power"));
    // A search box: a substring of the name or the sector, any case, with the RD's filters.
    let found = json_ok(http, "/api/devices?q=PUMP");
    assert_eq!(eps(&found), ["Pump-North", "pump-south", "meter"]);
    assert_eq!(found["total"], 3);
    let found = json_ok(http, "/api/devices?q=pump&rt=power");
    assert_eq!(eps(&found), ["meter"]);
    // A sorted column, either way, paged after sorting.
    let sorted = json_ok(http, "/api/devices?sort=-ep&count=2&page=1");
    assert_eq!(eps(&sorted), ["pump-south", "meter"]);
    assert_eq!(sorted["total"], 5);
    // Counts by status over every device, whatever the page shows.
    assert_eq!(found["counts"]["all"], 5);
    assert_eq!(found["counts"]["connected"], 5);
    assert_eq!(found["counts"]["disconnected"], 0);
    let resp = get(http, "/api/devices?sort=colour");
    api_error(&resp, 400, Some("sort"));
    drop(peers);
}

/// An open `GET /api/events` stream and everything it has sent so far.
struct EventStream {
    stream: std::net::TcpStream,
    seen: String,
}

impl EventStream {
    fn open(addr: SocketAddr) -> EventStream {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        write!(
            stream,
            "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .expect("request");
        EventStream {
            stream,
            seen: String::new(),
        }
    }

    /// Read until what was sent contains `needle` (false after `budget`).
    fn wait_for(&mut self, needle: &str, budget: Duration) -> bool {
        use std::io::Read;
        let deadline = Instant::now() + budget;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
        }
        true
    }
}

#[test]
fn registry_events_reach_an_event_stream_as_they_happen() {
    let mut gw = Gateway::start_with_http(GatewayOptions::default());
    let mut events = EventStream::open(gw.http_addr());
    assert!(
        events.wait_for("\r\n\r\n", WAIT),
        "headers: {}",
        events.seen
    );
    assert!(events.seen.starts_with("HTTP/1.1 200"), "{}", events.seen);
    assert!(
        events.seen.contains("content-type: text/event-stream"),
        "{}",
        events.seen
    );
    assert!(events.wait_for("retry: 2000", WAIT), "{}", events.seen);
    // A registration and its removal arrive as the platform's frames, each on a data line.
    let peer = Peer::new(gw.addr());
    let location = register(&peer, "ep=live-1&lt=300", "</t>");
    assert!(
        events.wait_for("\"type\":\"device_registered\"", WAIT),
        "{}",
        events.seen
    );
    assert!(events.seen.contains("data: {"), "{}", events.seen);
    assert!(events.seen.contains("\"ep\":\"live-1\""), "{}", events.seen);
    peer.delete(&location);
    assert!(
        events.wait_for("\"type\":\"device_removed\"", WAIT),
        "{}",
        events.seen
    );
    // A stream never ends by itself; shutdown must not wait for it beyond its bound.
    let t0 = Instant::now();
    assert_eq!(gw.terminate(), Some(0), "{}", gw.log_text());
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "shutdown with an open event stream took {:?}",
        t0.elapsed()
    );
}

#[test]
fn unknown_devices_are_404_and_bad_queries_400_naming_the_parameter() {
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let http = gw.http_addr();
    let _a = register_device(&gw, "twin", None, "light");
    let _b = register_device(&gw, "twin", Some("s2"), "light");

    api_error(&get(http, "/api/devices/nobody"), 404, None);
    api_error(&get(http, "/api/devices/twin?d=s9"), 404, None);
    // `twin` exists without a sector and in `s2` (issue 25 item 4): no `d`, or an empty one,
    // is the registration without a sector; the second sector neither blocks nor replaces it.
    assert_eq!(json_ok(http, "/api/devices/twin")["d"], Value::Null);
    assert_eq!(json_ok(http, "/api/devices/twin?d=")["d"], Value::Null);
    assert_eq!(json_ok(http, "/api/devices/twin?d=s2")["d"], "s2");
    // A name held only in a sector is not found without one; the answer names the sector.
    let _c = register_device(&gw, "lonely", Some("s3"), "light");
    let lonely = get(http, "/api/devices/lonely");
    api_error(&lonely, 404, None);
    assert!(lonely.text().contains("s3"), "{}", lonely.text());
    api_error(&get(http, "/api/devices/twin?x=1"), 400, Some("x"));

    let bad = [
        ("count=abc", "count"),
        ("count=0", "count"),
        ("count=1001", "count"),
        ("page=-1", "page"),
        ("page=1&page=2", "page"),
        ("=light", "=light"),
        ("rt=%FF", "rt=%FF"),
    ];
    for (query, parameter) in bad {
        api_error(
            &get(http, &format!("/api/devices?{query}")),
            400,
            Some(parameter),
        );
    }
    // Unknown paths are plain 404s.
    assert_eq!(get(http, "/api/nothing").status, 404);
}

#[test]
fn device_status_from_the_pinger_shows_in_the_api_and_the_metrics() {
    let kept = tempfile::tempdir().expect("tempdir");
    let opts = || GatewayOptions {
        extra_yaml: "pinger:\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\n".into(),
        data_dir: Some(kept.path().join("data")),
        ..Default::default()
    };
    let mut gw = Gateway::start_with_http(opts());
    let http = gw.http_addr();
    let mut sim = DeviceSim::spawn(gw.addr(), 4, &["--prefix", "sim-", "--lt", "60"]);
    sim.wait_line("device-sim ready:", Duration::from_secs(30));
    assert_eq!(json_ok(http, "/api/devices")["total"], 4);
    sim.command("silent 2");
    wait_until(Duration::from_secs(20), "sim-2 at status 0", || {
        eps(&json_ok(http, "/api/devices?status=0")) == ["sim-2"]
    });
    assert_eq!(json_ok(http, "/api/devices/sim-2")["status"], 0);
    assert_eq!(json_ok(http, "/api/devices?status=1")["total"], 3);
    let m = scrape(http);
    assert_eq!(sample(&m, "coap_gateway_devices", &[("status", "0")]), 1.0);
    assert_eq!(sample(&m, "coap_gateway_devices", &[("status", "1")]), 3.0);
    assert_eq!(sample(&m, "coap_gateway_registrations", &[]), 4.0);

    // The console's device page: the change is in the history, and "last seen" is the last
    // answer (pings keep answering for sim-0), not the registration.
    let detail = json_ok(http, "/api/devices/sim-2/detail");
    let changes = detail["status_history"]
        .as_array()
        .expect("history")
        .clone();
    assert_eq!(changes.len(), 1, "{detail}");
    assert_eq!(changes[0]["status"], 0);
    let alive = json_ok(http, "/api/devices/sim-0/detail");
    assert!(
        alive["seen_at"].as_str() > alive["updated_at"].as_str(),
        "sim-0 answered pings after it registered: {alive}"
    );
    assert_eq!(alive["status_history"], serde_json::json!([]));
    sim.command("wake 2");
    wait_until(Duration::from_secs(20), "sim-2 back at status 1", || {
        json_ok(http, "/api/devices/sim-2")["status"] == 1
    });
    let before = json_ok(http, "/api/devices/sim-2/detail")["status_history"].clone();
    assert_eq!(before.as_array().map(Vec::len), Some(2), "{before}");
    assert_eq!(before[1]["status"], 1);

    // The history is stored with the registration: it survives kill -9.
    gw.kill9();
    drop(gw);
    drop(sim);
    let gw = Gateway::start_with_http(opts());
    let after = json_ok(gw.http_addr(), "/api/devices/sim-2/detail");
    assert_eq!(after["status_history"], before, "{after}");
}

fn rd_dump(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rd-dump"))
        .args(args)
        .output()
        .expect("run rd-dump");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rd_dump_reads_a_running_gateway_over_http_across_pages() {
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let url = gw.http_url();
    let _peers: Vec<Peer> = (0..5)
        .map(|i| register_device(&gw, &format!("dump-{i}"), None, "light"))
        .collect();

    // Pages of 2: three requests, every device once.
    let (code, table, err) = rd_dump(&["--url", &url, "--page-size", "2"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("LOCATION"), "{table}");
    assert_eq!(lines.last(), Some(&"5 registrations"), "{table}");
    for i in 0..5 {
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(&format!("dump-{i}")))
            .unwrap_or_else(|| panic!("no row for dump-{i}:\n{table}"));
        assert!(row.contains("</sensors/light>;rt=\"light\";obs"), "{row}");
        assert!(row.contains("coap://127.0.0.1:"), "{row}");
    }

    let (code, json, err) = rd_dump(&["--url", &url, "--json"]);
    assert_eq!(code, 0, "{err}");
    let served = json_ok(gw.http_addr(), "/api/devices");
    let dumped: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(&dumped, served["devices"].as_array().unwrap());

    // The database is locked by the running gateway; the URL is the way in.
    let (code, _, err) = rd_dump(&["--data-dir", gw.data_dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("locked"), "{err}");
    // A gateway that is not there is an error, not an empty table.
    let (code, out, err) = rd_dump(&["--url", "http://127.0.0.1:9"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

#[test]
fn wrong_methods_are_405_with_allow_and_head_is_served_like_get() {
    use common::http::request;
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let http = gw.http_addr();
    register_device(&gw, "methods-node", None, "temp");
    for path in [
        "/",
        "/status.js",
        "/health",
        "/metrics",
        "/api/devices",
        "/api/devices/methods-node",
        "/api/devices/methods-node/detail",
        "/api/gateway",
        "/device",
        "/device.js",
        "/gateway",
        "/gateway.js",
        "/console.css",
    ] {
        // HEAD: the GET answer's status and headers, no body (RFC 9110 §9.3.2).
        let full = get(http, path);
        assert_eq!(full.status, 200, "GET {path}");
        let head = request(http, "HEAD", path);
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path} sent a body");
        assert_eq!(
            head.header("content-type"),
            full.header("content-type"),
            "HEAD {path}"
        );
        for method in ["POST", "PUT", "DELETE"] {
            if path == "/api/devices/methods-node" && method == "DELETE" {
                // The console removes a registration, but only with the admin token: this
                // gateway has none, so it is read-only.
                let resp = request(http, method, path);
                assert_eq!(resp.status, 403, "{}", resp.text());
                assert!(resp.text().contains("http.token_file"), "{}", resp.text());
                continue;
            }
            let resp = request(http, method, path);
            assert_eq!(resp.status, 405, "{method} {path}: {}", resp.text());
            let allow = resp.header("allow").unwrap_or_default().to_string();
            assert!(
                allow.contains("GET") && allow.contains("HEAD"),
                "{method} {path}: Allow {allow:?}"
            );
        }
    }
    // An unknown path stays 404, whatever the method.
    assert_eq!(get(http, "/nope").status, 404);
    assert_eq!(request(http, "POST", "/nope").status, 404);
}

/// One raw request with `host` as its `Host` header (or none); the status and the whole answer.
fn raw_get_with_host(addr: SocketAddr, path: &str, host: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let host_line = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    let version = if host.is_some() { "1.1" } else { "1.0" };
    write!(
        stream,
        "GET {path} HTTP/{version}\r\n{host_line}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    (status, answer)
}

/// Issue 25 item 10: a page on `http://evil.example:PORT` whose name rebinds to 127.0.0.1 is
/// same-origin with the admin API in the browser, which sends `Host: evil.example:PORT`.
/// Only addresses, `localhost` and the names in `http.allowed_hosts` are answered; any other
/// Host gets 421 and no data.
#[test]
fn a_rebinding_host_name_gets_421_and_no_data() {
    let gw = Gateway::start_with_http(GatewayOptions {
        // Continues the `http:` section the harness writes.
        extra_yaml: "  allowed_hosts: [gateway.test]\n".into(),
        ..GatewayOptions::default()
    });
    let http = gw.http_addr();
    let _device = register_device(&gw, "secret-1", None, "light");
    let port = http.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
    ] {
        for path in ["/api/devices", "/health", "/metrics", "/"] {
            let (status, answer) = raw_get_with_host(http, path, Some(&host));
            assert_eq!(status, 421, "Host {host} {path}: {answer}");
            assert!(!answer.contains("secret-1"), "{answer}");
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("Gateway.Test:{port}"),
        "127.0.0.1".into(),
    ] {
        let (status, answer) = raw_get_with_host(http, "/api/devices", Some(&host));
        assert_eq!(status, 200, "Host {host}: {answer}");
        assert!(answer.contains("secret-1"), "{answer}");
    }
    // HTTP/1.0 without Host: not a browser, answered.
    assert_eq!(raw_get_with_host(http, "/health", None).0, 200);
    assert!(
        gw.wait_for_log("refused with 421", WAIT),
        "{}",
        gw.log_text()
    );
}
