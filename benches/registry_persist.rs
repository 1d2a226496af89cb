//! Durable registrations per second through the Registry actor (the RD's target: it must
//! sustain ≥ 20,000 durable registrations/s, so group commit has to batch well).
//!
//! Registers N endpoints (3 links each) with 64 `Register` messages in flight on a fresh data
//! directory, for N = 10,000 and 100,000; every reply is an acknowledgement after a flush.
//! Prints one JSON line: overall rate per run, the rate over the first 1,000 and the last 10%
//! (the registry must not slow down as it grows), VmRSS with N registered, durable updates/s
//! of all N (target: ≥ 50,000/s at 100,000), and the time a
//! restart on that directory takes until lookups answer (target: ≤ 3 s at 100,000).
//!
//! Run: `cargo bench --bench registry_persist` (release). `BENCH_SIZES` (e.g. `100000`) and
//! `BENCH_CACHE_MB` override the sizes and the sled cache. `BENCH_DIR` picks the parent of the
//! temporary data directories (default: the system temp dir; it must be a real disk, not tmpfs,
//! for the fsync cost to count).

#[path = "support/registrations.rs"]
mod registrations;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::registry::{self, RegistryConfig, Update};
use futures::stream::{FuturesUnordered, StreamExt};

const IN_FLIGHT: usize = 64;
/// `gateway.cache_mb`'s default; `BENCH_CACHE_MB` overrides it.
const DEFAULT_CACHE_MB: u64 = 32;

struct Run {
    n: usize,
    total: Duration,
    first_1k: Duration,
    last_10pct: Duration,
    rss_kb: Option<u64>,
    /// Updating every one of the N registrations once, 64 in flight.
    updates: Duration,
    /// From `registry::start` on the populated directory (new actor system) until it answers
    /// lookups, and the VmRSS right after.
    restart: Duration,
    rss_after_restart_kb: Option<u64>,
}

fn rate(count: usize, d: Duration) -> f64 {
    (count as f64 / d.as_secs_f64()).round()
}

fn config(dir: &std::path::Path, cache_mb: u64) -> RegistryConfig {
    RegistryConfig {
        data_dir: dir.to_path_buf(),
        cache_mb,
        expiry_grace_s: 3600,
        max_registrations: None,
    }
}

/// Populate a fresh directory in one actor system, then restart on it in another.
fn run(n: usize, parent: &std::path::Path, cache_mb: u64) -> Run {
    let dir = tempfile::tempdir_in(parent).expect("a temporary data directory");
    let sys = System::new();
    let mut run = sys.block_on(populate(n, dir.path(), cache_mb));
    System::current().stop();
    let _ = sys.run();

    let sys = System::new();
    sys.block_on(async {
        let started = Instant::now();
        let (_addr, reader) =
            registry::start(config(dir.path(), cache_mb)).expect("the registry restarts");
        assert_eq!(reader.len(), n);
        run.restart = started.elapsed();
        run.rss_after_restart_kb = vm_rss_kb();
    });
    System::current().stop();
    let _ = sys.run();
    run
}

async fn populate(n: usize, dir: &std::path::Path, cache_mb: u64) -> Run {
    let (addr, reader) =
        registry::start(config(dir, cache_mb)).expect("the registry starts on a fresh directory");

    let last_start_at = n - n / 10;
    let started = Instant::now();
    let (mut first_1k, mut last_started) = (None, None);
    let mut in_flight = FuturesUnordered::new();
    let (mut sent, mut done) = (0usize, 0usize);
    while done < n {
        while sent < n && in_flight.len() < IN_FLIGHT {
            in_flight.push(addr.send(registrations::register(sent)));
            sent += 1;
        }
        if let Some(reply) = in_flight.next().await {
            reply
                .expect("the registry is running")
                .expect("the registration is durable");
            done += 1;
            if done == 1000 {
                first_1k = Some(started.elapsed());
            }
            if done == last_start_at {
                last_started = Some(Instant::now());
            }
        }
    }
    let total = started.elapsed();
    let last_10pct = last_started.map_or(total, |t| t.elapsed());
    assert_eq!(reader.len(), n);
    let rss_kb = vm_rss_kb();

    // RFC 9176 §5.3.1 updates (empty POST to the location) of every endpoint, durable too.
    let ids: Vec<_> = reader.with_index(|i| i.live(0).map(|r| r.id).collect());
    let started = Instant::now();
    let mut pending = ids.iter();
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < IN_FLIGHT {
            let Some(&id) = pending.next() else { break };
            in_flight.push(addr.send(Update {
                identity: None,
                id,
                lifetime_s: None,
                base: None,
                attrs: Vec::new(),
                source: SocketAddr::from(([127, 0, 0, 1], 9999)),
            }));
        }
        match in_flight.next().await {
            Some(reply) => {
                reply
                    .expect("the registry is running")
                    .expect("the update is durable");
            }
            None => break,
        }
    }
    let updates = started.elapsed();
    Run {
        n,
        total,
        first_1k: first_1k.unwrap_or(total),
        last_10pct,
        rss_kb,
        updates,
        restart: Duration::ZERO,
        rss_after_restart_kb: None,
    }
}

fn vm_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let parent = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let cache_mb = std::env::var("BENCH_CACHE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CACHE_MB);
    // `BENCH_SIZES=100000` runs one size alone (a clean RSS figure for it).
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let runs: Vec<Run> = sizes.iter().map(|&n| run(n, &parent, cache_mb)).collect();
    let mut json = serde_json::json!({
        "bench": "registry_persist",
        "in_flight": IN_FLIGHT,
        "links_per_endpoint": 3,
        "cache_mb": cache_mb,
    });
    for r in &runs {
        let key = format!("n{}", r.n);
        json[key] = serde_json::json!({
            "seconds": (r.total.as_secs_f64() * 1000.0).round() / 1000.0,
            "durable_registrations_per_s": rate(r.n, r.total),
            "first_1k_per_s": rate(1000, r.first_1k),
            "last_10pct_per_s": rate(r.n / 10, r.last_10pct),
            "vm_rss_mb_after": r.rss_kb.map(|kb| kb / 1024),
            "durable_updates_per_s": rate(r.n, r.updates),
            "restart_ms": r.restart.as_millis(),
            "vm_rss_mb_after_restart": r.rss_after_restart_kb.map(|kb| kb / 1024),
        });
    }
    println!("{json}");
}
