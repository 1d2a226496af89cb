//! The etcd registry backend (issue 22, `docs/ha-etcd.md`): durable registrations per second
//! through a three-member etcd cluster on this machine (target ≥ 5,000/s), how long a write at
//! replica A takes to be visible in replica B's index (target p99 < 100 ms), and lookups at a
//! replica's index (the same index as with sled: target ≥ 150,000/s).
//!
//! Two replicas (Registry actors with `registry.backend: etcd`) run in this process on one
//! cluster that the bench starts on loopback ports, data in a temporary directory on the
//! system's disk (etcd fsyncs its WAL per commit, so tmpfs would flatter it):
//! 1. N registrations (3 links each, `support/registrations.rs`) alternating between A and B,
//!    `IN_FLIGHT` in flight; every reply means etcd committed it and the replica's index has it.
//! 2. 1,000 registrations one at a time at A; for each, the time from A's reply until B's
//!    index holds it (B polled every 50 µs): p50, p99, max.
//! 3. Lookups of one endpoint by name at B's index through `RegistryReader::find` from one
//!    thread for 2 s (the RD over CoAP on a replica: `scripts/bench_ha_rd.sh`).
//! 4. The write stall when the etcd Raft leader is SIGKILLed: registrations at A one at a
//!    time; the time from the kill until the next one is acknowledged (the last run only,
//!    since the cluster is down a member afterwards).
//!
//! Run: `cargo bench --bench ha_etcd` (release; needs `etcd`, Debian's etcd-server).
//! `BENCH_SIZES` (default `10000`) and `BENCH_IN_FLIGHT` (default 256) override. Prints one JSON
//! line.

#[path = "../tests/common/etcd.rs"]
mod etcd;
/// The test CA that `etcd` uses for a TLS cluster (not used by this bench).
#[path = "../tests/common/pki.rs"]
mod pki;
#[path = "support/registrations.rs"]
mod registrations;

use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::registry::etcd::EtcdSettings;
use coap_gateway::registry::{self, EndpointName, RegistryConfig};
use futures::stream::{FuturesUnordered, StreamExt};

/// Bound on waiting for B to see a write (a defect, not a measurement).
const VISIBLE_BOUND: Duration = Duration::from_secs(10);
const LOOKUP_FOR: Duration = Duration::from_secs(2);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at].as_secs_f64() * 1000.0
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000]);
    let in_flight: usize = env_or("BENCH_IN_FLIGHT", 256);
    let mut cluster = etcd::EtcdCluster::start(3);
    let last = sizes.len().saturating_sub(1);
    for (round, n) in sizes.into_iter().enumerate() {
        let sys = System::new();
        let line = sys.block_on(run(&mut cluster, round, n, in_flight, round == last));
        println!("{line}");
        System::current().stop();
        let _ = sys.run();
    }
}

async fn run(
    cluster: &mut etcd::EtcdCluster,
    round: usize,
    n: usize,
    in_flight: usize,
    kill_leader: bool,
) -> String {
    let prefix = format!("/bench/run-{round}");
    let endpoints = cluster.endpoints();
    let start = |member: &'static str| {
        let settings = EtcdSettings::new(endpoints.clone(), &prefix, member);
        async move {
            let dir = std::env::temp_dir();
            registry::start_on_etcd(
                RegistryConfig {
                    expiry_grace_s: 3600,
                    ..RegistryConfig::in_dir(dir)
                },
                &settings,
            )
            .await
            .expect("a replica on etcd")
        }
    };
    let (a, a_reader, _) = start("bench-a").await;
    let (b, b_reader, _) = start("bench-b").await;

    // 1. Durable registrations/s, alternating replicas.
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let (mut sent, mut done) = (0usize, 0usize);
    while done < n {
        while sent < n && pending.len() < in_flight {
            let at = if sent % 2 == 0 { &a } else { &b };
            pending.push(at.send(registrations::register(sent)));
            sent += 1;
        }
        if let Some(reply) = pending.next().await {
            reply
                .expect("the registry is running")
                .expect("the registration is committed");
            done += 1;
        }
    }
    let total = started.elapsed();
    let deadline = Instant::now() + VISIBLE_BOUND;
    while a_reader.len() < n || b_reader.len() < n {
        assert!(Instant::now() < deadline, "both indexes hold all {n}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // 2. Visibility at B of a write acknowledged at A.
    let mut lags = Vec::with_capacity(1000);
    for i in 0..1000 {
        let reply = a
            .send(registrations::register(n + i))
            .await
            .expect("the registry is running")
            .expect("the registration is committed");
        let acked = Instant::now();
        let id = reply.registration.id;
        while b_reader.get(id).is_none() {
            assert!(acked.elapsed() < VISIBLE_BOUND, "B sees {id:?}");
            std::thread::sleep(Duration::from_micros(50));
            tokio::task::yield_now().await;
        }
        lags.push(acked.elapsed());
    }
    lags.sort();

    // 3. Lookups by name at B.
    let name = EndpointName::new("bench-node-000042").expect("a name");
    let started = Instant::now();
    let mut lookups = 0u64;
    while started.elapsed() < LOOKUP_FOR {
        for _ in 0..1000 {
            assert!(b_reader.find(&name, None).is_some());
        }
        lookups += 1000;
    }
    let lookup_rate = lookups as f64 / started.elapsed().as_secs_f64();

    // 4. The write stall across a SIGKILL of the etcd leader.
    let stall_ms = if kill_leader {
        let leader = cluster.leader().expect("a Raft leader");
        cluster.kill(leader);
        let killed = Instant::now();
        let mut i = n + 1000;
        loop {
            assert!(killed.elapsed() < Duration::from_secs(60), "writes resume");
            let reply = a
                .send(registrations::register(i))
                .await
                .expect("the registry is running");
            i += 1;
            if reply.is_ok() {
                break Some(killed.elapsed().as_secs_f64() * 1000.0);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else {
        None
    };

    serde_json::json!({
        "bench": "ha_etcd",
        "etcd_members": 3,
        "replicas": 2,
        "registrations": n,
        "in_flight": in_flight,
        "durable_registrations_per_s": (n as f64 / total.as_secs_f64()).round(),
        "visible_at_b_ms": {
            "p50": percentile(&lags, 0.5),
            "p99": percentile(&lags, 0.99),
            "max": percentile(&lags, 1.0),
        },
        "lookups_by_name_per_s_at_b": lookup_rate.round(),
        "etcd_leader_kill_write_stall_ms": stall_ms,
    })
    .to_string()
}
