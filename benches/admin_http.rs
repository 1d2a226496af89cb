//! Admin HTTP latency at scale (at the RD's design scale of 100,000 devices): how long `/health`,
//! `/metrics` and `/api/devices` take over a real loopback socket when the registry holds N
//! registrations (3 links each).
//!
//! Registers N endpoints through the Registry actor (64 in flight, durable), starts the admin
//! server on 127.0.0.1:0 in process, then sends each request `REPS` times, one after the other
//! over one keep-alive connection (awc), and prints one JSON line per endpoint: p50 and max in
//! ms, and the body size. Filtered listings scan every registration; unfiltered pages and
//! single-device reads do not; a search (`q`) scans every name, a sort sorts every match.
//!
//! Run: `cargo bench --bench admin_http` (release). `BENCH_SIZES` (default `100000`) sets N.

#[path = "support/registrations.rs"]
mod registrations;

use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::admin::{self, AdminState};
use coap_gateway::registry::{self, RegistryConfig};

const IN_FLIGHT: usize = 64;
const REPS: usize = 30;

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
        "127.0.0.1:0".parse().unwrap(),
        AdminState::new(reader, registry),
    )
    .expect("admin server");
    let base = format!("http://{}", server.local_addr());
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mid = format!("bench-node-{:06}", n / 2);
    let paths = [
        "/health".to_string(),
        "/metrics".to_string(),
        "/api/devices?count=100".to_string(),
        format!("/api/devices?count=1000&page={}", n / 2000),
        "/api/devices?rt=light-lux&count=100".to_string(),
        format!("/api/devices?ep={mid}"),
        format!("/api/devices/{mid}"),
        // The console's list (issue 24): a search box, a sorted column, a page deep in a sort.
        format!("/api/devices?q={}&count=100", &mid[mid.len() - 5..]),
        "/api/devices?q=NODE&count=100".to_string(),
        "/api/devices?sort=-ep&count=100".to_string(),
        format!("/api/devices?sort=status&count=100&page={}", n / 200),
        // The console's pages: the list's first paint (100 rows rendered on the server), its
        // script, a device page's data, the gateway page's data.
        "/".to_string(),
        "/status.js".to_string(),
        format!("/api/devices/{mid}/detail"),
        "/api/gateway".to_string(),
    ];
    for path in paths {
        let mut times = Vec::with_capacity(REPS);
        let mut bytes = 0;
        for _ in 0..REPS {
            let t = Instant::now();
            let mut resp = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("request");
            let body = resp.body().limit(64 << 20).await.expect("body");
            times.push(t.elapsed());
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
            bytes = body.len();
        }
        times.sort();
        println!(
            "{{\"bench\":\"admin_http\",\"registrations\":{n},\"path\":{path:?},\"p50_ms\":{:.2},\"max_ms\":{:.2},\"body_bytes\":{bytes}}}",
            times[REPS / 2].as_secs_f64() * 1e3,
            times[REPS - 1].as_secs_f64() * 1e3,
        );
    }
    server.shutdown().await;
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000]);
    for n in sizes {
        System::new().block_on(run(n));
    }
}
