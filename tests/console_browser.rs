//! The admin console in a real browser: headless Chromium driven over WebDriver
//! (`tests/common/webdriver.rs`: chromedriver and the `fantoccini` client) against the real
//! gateway binary, with devices registered over plain CoAP.
//!
//! Chromium and chromedriver are the Debian packages `chromium` and `chromium-driver`
//! (scripts/test.sh installs them). Without them the tests print a SKIP line, except under
//! `COAP_GATEWAY_NO_SKIPS` (CI), where their absence is a failure.

mod common;

use std::time::{Duration, Instant};

use common::coap_peer::{register, Peer};
use common::webdriver::{self, Chrome};
use common::{Gateway, GatewayOptions};

/// How long the page may take to show what the registry holds.
const WAIT: Duration = Duration::from_secs(15);

/// Register `ep` over plain CoAP from a fresh socket, with one temperature resource.
fn register_device(gw: &Gateway, ep: &str) -> Peer {
    let peer = Peer::new(gw.addr());
    register(
        &peer,
        &format!("ep={ep}&lt=300"),
        "</sensors/temp>;rt=\"temperature\";obs",
    );
    peer
}

#[test]
fn the_status_page_lists_registered_devices_in_a_real_browser() {
    if !webdriver::require() {
        return;
    }
    let t0 = Instant::now();
    let gw = Gateway::start_with_http(GatewayOptions::default());
    let eps = ["kitchen-1", "kitchen-2", "hall-1"];
    let _peers: Vec<Peer> = eps.iter().map(|ep| register_device(&gw, ep)).collect();

    let chrome = Chrome::start();
    let started = t0.elapsed();
    chrome.goto(&format!("{}/", gw.http_url()));
    chrome.wait_until_js("document.querySelectorAll('tr.device').length === 3", WAIT);
    assert_eq!(chrome.count("tr.device"), 3);
    let mut shown: Vec<String> = chrome
        .attrs("tr.device", "data-ep")
        .into_iter()
        .map(|ep| ep.expect("every device row has data-ep"))
        .collect();
    shown.sort();
    let mut want: Vec<String> = eps.iter().map(|ep| ep.to_string()).collect();
    want.sort();
    assert_eq!(shown, want, "one row per registered device");
    // What a person reads in the rows: the endpoint names, as links to their pages.
    let mut names = chrome.texts("tr.device td.ep");
    names.sort();
    assert_eq!(names, want, "the endpoint names shown in the table");
    assert_eq!(
        chrome
            .attr("tr[data-ep='hall-1']", "data-status")
            .as_deref(),
        Some("1")
    );
    chrome.assert_no_alert("the status page");

    let png = chrome.screenshot("smoke");
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("read {}: {e}", png.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        png.display()
    );
    eprintln!(
        "browser up in {started:?}, test done in {:?}; screenshot: {}",
        t0.elapsed(),
        png.display()
    );
}
