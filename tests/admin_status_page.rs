//! The status page at `GET /` (issue 12) rendered by headless Chromium against the real
//! gateway: one table row per registered device with its ep and status (a device silenced in
//! `device-sim` shows as down once the Pinger noticed), the platform link state (not
//! configured; connected to `platform-sim`), the page polling again by itself, and a
//! screenshot that is a real rendering, not a blank page.
//!
//! Chromium is the Debian package `chromium` (scripts/test.sh installs it). Without it the
//! tests print a SKIP line, except in CI (env `CI` set), where its absence is a failure.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::device_sim::DeviceSim;
use common::http::get;
use common::platform_sim::PlatformSim;
use common::{require_tool, Gateway, GatewayOptions};

const CHROMIUM: &str = "chromium";
/// Upper bound for one Chromium run (a cold start takes a few seconds).
const CHROMIUM_BUDGET: Duration = Duration::from_secs(90);
const DEVICES: usize = 5;

/// Run headless Chromium with a fresh profile and `args`; returns stdout. Bounded: killed after
/// [`CHROMIUM_BUDGET`].
fn chromium(args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdout(out.reopen().expect("stdout handle"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait chromium") {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if t0.elapsed() > CHROMIUM_BUDGET {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {CHROMIUM_BUDGET:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(out.path()).expect("chromium output")
}

/// The attribute `name` of every `<tr class="device" ...>` in a dumped DOM, in order.
fn row_attrs(dom: &str, name: &str) -> Vec<String> {
    dom.split("<tr class=\"device\"")
        .skip(1)
        .map(|row| {
            let tag = &row[..row.find('>').expect("tag end")];
            let key = format!("{name}=\"");
            let start = tag
                .find(&key)
                .unwrap_or_else(|| panic!("no {name} in {tag}"))
                + key.len();
            tag[start..start + tag[start..].find('"').unwrap()].to_string()
        })
        .collect()
}

/// The rows' cell texts (tags stripped), one string per device row.
fn row_texts(dom: &str) -> Vec<String> {
    dom.split("<tr class=\"device\"")
        .skip(1)
        .map(|row| {
            let row = &row[..row.find("</tr>").expect("row end")];
            let mut text = String::new();
            let mut in_tag = true;
            for c in row.chars() {
                match c {
                    '<' => {
                        in_tag = true;
                        text.push(' ');
                    }
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 24, "not a PNG: {} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

fn screenshot(target: &str, file: &Path) -> Vec<u8> {
    chromium(&[
        &format!("--screenshot={}", file.display()),
        "--virtual-time-budget=5000",
        target,
    ]);
    std::fs::read(file).expect("screenshot file")
}

fn wait_for_status_0(gw: &Gateway, ep: &str) {
    let t0 = Instant::now();
    loop {
        let resp = get(gw.http_addr(), &format!("/api/devices/{ep}"));
        if resp.status == 200 && resp.json()["status"] == 0 {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{ep} never went to status 0"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn status_page_shows_every_device_with_its_status_in_headless_chromium() {
    if !require_tool(CHROMIUM) {
        return;
    }
    let gw = Gateway::start_with_http(GatewayOptions {
        extra_yaml: "pinger:\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\n".into(),
        ..Default::default()
    });
    let mut sim = DeviceSim::spawn(gw.addr(), DEVICES, &["--prefix", "page-", "--lt", "60"]);
    sim.wait_line("device-sim ready:", Duration::from_secs(30));
    sim.command("silent 3");
    wait_for_status_0(&gw, "page-3");

    let url = format!("{}/", gw.http_url());
    let dom = chromium(&["--dump-dom", "--virtual-time-budget=5000", &url]);
    let mut eps = row_attrs(&dom, "data-ep");
    eps.sort();
    let want: Vec<String> = (0..DEVICES).map(|i| format!("page-{i}")).collect();
    assert_eq!(eps, want, "one row per device:\n{dom}");
    let statuses: Vec<(String, String)> = row_attrs(&dom, "data-ep")
        .into_iter()
        .zip(row_attrs(&dom, "data-status"))
        .collect();
    for (ep, status) in &statuses {
        let want = if ep == "page-3" { "0" } else { "1" };
        assert_eq!(status, want, "{ep}: {statuses:?}");
    }
    // What a person sees in each row: the ep, up/down, the registered links.
    for text in row_texts(&dom) {
        let ep = text.split(' ').next().unwrap();
        let shown = if ep == "page-3" { "down" } else { "up" };
        assert!(text.contains(&format!(" {shown} ")), "{text}");
        assert!(text.contains("s ago"), "last seen: {text}");
        // The DOM dump escapes the text's angle brackets.
        assert!(
            text.contains("&lt;/sensors/temp&gt;;rt=temperature;if=sensor;obs"),
            "links, from the device object's link fields: {text}"
        );
        assert!(text.contains("Z"), "expires as RFC 3339: {text}");
        assert!(text.contains("coap://127.0.0.1:"), "base: {text}");
    }
    assert!(
        dom.contains(r#"id="platform" class="">not configured<"#),
        "platform state:\n{dom}"
    );
    assert!(dom.contains(&format!(r#"id="registrations">{DEVICES}<"#)));
    // The page polled again on its own within the 5 s budget (every 2 s).
    let polls: u32 = dom
        .split("data-polls=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no data-polls on <body>:\n{dom}"));
    assert!(polls >= 2, "page polled {polls} times in 5 s");
}

#[test]
fn status_page_screenshot_is_a_real_rendering_and_shows_the_platform_link() {
    if !require_tool(CHROMIUM) {
        return;
    }
    let platform = PlatformSim::start("127.0.0.1:0", None);
    let gw = Gateway::start_with_http(GatewayOptions {
        extra_yaml: format!("platform:\n  url: {:?}\n", platform.url()),
        ..Default::default()
    });
    let mut sim = DeviceSim::spawn(gw.addr(), 3, &["--prefix", "shot-", "--lt", "60"]);
    sim.wait_line("device-sim ready:", Duration::from_secs(30));
    platform
        .wait_type("snapshot", None, Duration::from_secs(15))
        .expect("the link is up");
    let page = get(gw.http_addr(), "/");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page
        .header("content-security-policy")
        .is_some_and(|csp| csp.contains("script-src 'self'")));
    let dom = chromium(&[
        "--dump-dom",
        "--virtual-time-budget=5000",
        &format!("{}/", gw.http_url()),
    ]);
    assert!(
        dom.contains(r#"id="platform" class="up">connected<"#),
        "platform state:\n{dom}"
    );
    assert_eq!(row_attrs(&dom, "data-ep").len(), 3, "{dom}");
    let dir = tempfile::tempdir().unwrap();
    let page = screenshot(&format!("{}/", gw.http_url()), &dir.path().join("page.png"));
    let blank = screenshot("about:blank", &dir.path().join("blank.png"));
    assert_eq!(png_size(&page), (1200, 800));
    assert_eq!(png_size(&blank), (1200, 800));
    // A rendered table compresses far worse than an empty white page (here ~37 KB vs ~4.5 KB).
    assert!(
        page.len() > 3 * blank.len(),
        "screenshot of the status page ({} bytes) is not much more than a blank page ({} bytes)",
        page.len(),
        blank.len()
    );
}

#[test]
fn the_first_paint_is_rendered_on_the_server_with_every_value_escaped() {
    // No browser and no script: what `curl` (or a screenshot before any script ran) sees.
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let peer = common::coap_peer::Peer::new(gw.addr());
    let resp = peer.post_links("/rd?ep=first-paint&lt=600", "</sensors/temp>;rt=\"t\";obs");
    assert_eq!(resp.code, "2.01");
    let evil = "<script>alert(1)</script>";
    let resp = peer.post_links(&format!("/rd?ep={evil}&lt=600"), "</a>");
    assert_eq!(
        resp.code, "2.01",
        "the RD accepts any ep without control characters"
    );

    let page = get(gw.http_addr(), "/");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains(r#"data-ep="first-paint""#)
            && html.contains(r#"<a href="/device?ep=first-paint">first-paint</a></td>"#),
        "a row for the registered device:\n{html}"
    );
    assert!(html.contains("&lt;/sensors/temp&gt;;rt=t;obs"), "{html}");
    assert!(html.contains(r#"id="registrations">2<"#), "{html}");
    assert!(
        html.contains(r#"id="platform" class="">not configured<"#),
        "{html}"
    );
    // The device's name is text, never markup: the only <script> is the page's own.
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped ep:\n{html}"
    );
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    // Its device page link carries the name as an encoded query value.
    assert!(
        html.contains("/device?ep=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        "{html}"
    );
    assert!(!html.contains("{{"), "every marker filled:\n{html}");
}
