//! The operator console at the design scale, in a real browser: 100,000 registrations (3 links
//! each) in an in-process registry, the admin server on 127.0.0.1:0, headless Chromium driven
//! over WebDriver (the tests' harness, `tests/common/webdriver.rs`).
//!
//! Measured inside the page with `performance.now()`, so WebDriver's own round trips are not
//! counted:
//! - `list_load`: navigation start to the device list drawn from the API by the script (the
//!   server-rendered first paint shows earlier: `first_paint`, the load event's end);
//! - `search`: a search submitted (Enter in the search box) to its result drawn (typing waits
//!   150 ms more before it searches, so one keystroke does not send a request per letter);
//! - `device_page`: navigation start to a device page drawn.
//!
//! Each `REPS` times; one JSON line each with p50 and max in ms.
//!
//! Run: `cargo bench --bench console_browser` (release; needs Debian's chromium and
//! chromium-driver). `BENCH_SIZES` (default `100000`) sets N.

#[path = "support/registrations.rs"]
mod registrations;

/// The tests' browser harness (and the skip rule it uses), shared rather than copied.
mod support {
    #[path = "../../tests/common/skip.rs"]
    pub mod skip;
    #[path = "../../tests/common/webdriver.rs"]
    pub mod webdriver;
}

use std::time::Duration;

use actix::prelude::*;
use coap_gateway::admin::{self, AdminState};
use coap_gateway::registry::{self, RegistryConfig};
use support::webdriver::{self, Chrome};

const IN_FLIGHT: usize = 64;
const REPS: usize = 10;
const WAIT: Duration = Duration::from_secs(30);

fn report(n: usize, what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{{\"bench\":\"console_browser\",\"registrations\":{n},\"what\":{what:?},\"p50_ms\":{:.1},\"max_ms\":{:.1}}}",
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
}

fn number(chrome: &Chrome, js: &str) -> f64 {
    chrome.execute(js, vec![]).as_f64().unwrap_or(f64::NAN)
}

/// The browser part, on a thread of its own (the harness blocks on its own runtime).
fn measure(n: usize, base: String) {
    let chrome = Chrome::start();
    let mid = format!("bench-node-{:06}", n / 2);
    let (mut load, mut paint, mut search, mut device) = (vec![], vec![], vec![], vec![]);
    for _ in 0..REPS {
        chrome.goto(&format!("{base}/"));
        chrome.wait_until_js("Number(document.body.dataset.refreshes || 0) >= 1", WAIT);
        load.push(number(
            &chrome,
            "return Number(document.body.dataset.drawnMs);",
        ));
        paint.push(number(
            &chrome,
            "return performance.getEntriesByType('navigation')[0].loadEventEnd;",
        ));
        for q in [&mid[mid.len() - 5..], "node-09"] {
            let before = number(&chrome, "return Number(document.body.dataset.refreshes);");
            let t0 = number(
                &chrome,
                &format!(
                    "document.getElementById('search').value = {q:?}; \
                     const t0 = performance.now(); \
                     document.getElementById('filters').requestSubmit(); return t0;"
                ),
            );
            chrome.wait_until_js(
                &format!("Number(document.body.dataset.refreshes) > {before}"),
                WAIT,
            );
            let drawn = number(&chrome, "return Number(document.body.dataset.drawnMs);");
            search.push(drawn - t0);
        }
        chrome.goto(&format!("{base}/device?ep={mid}"));
        chrome.wait_until_js("Number(document.body.dataset.loads || 0) >= 1", WAIT);
        device.push(number(&chrome, "return performance.now();"));
    }
    report(n, "list_load", load);
    report(n, "first_paint", paint);
    report(n, "search", search);
    report(n, "device_page", device);
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, reader) = registry::start(RegistryConfig {
        data_dir: dir.path().join("db"),
        cache_mb: 32,
        expiry_grace_s: 3600,
        max_registrations: None,
    })
    .expect("registry");
    registrations::register_all(&registry, n, IN_FLIGHT).await;
    let server = admin::start(
        "127.0.0.1:0".parse().expect("address"),
        AdminState::new(reader, registry),
    )
    .expect("admin server");
    let base = format!("http://{}", server.local_addr());
    let browser = std::thread::spawn(move || measure(n, base));
    // The admin server runs on this system: wait for the browser without blocking it.
    while !browser.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = browser.join();
    server.shutdown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn main() {
    if !webdriver::available() {
        eprintln!("console_browser: chromium or chromedriver is missing; nothing measured");
        return;
    }
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000]);
    for n in sizes {
        System::new().block_on(run(n));
    }
}
