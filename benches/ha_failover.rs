//! The platform link's failover between replicas on etcd (issue 22, `docs/ha-etcd.md` §8):
//! how long the platform is without a link when the leader is SIGKILLed, and how long until
//! the events acknowledged meanwhile have all reached it, as events.
//!
//! Each run starts a three-member etcd cluster on loopback ports, `platform-sim` and two
//! `coap-gateway` processes (`member_ttl_s: 3`), registers 100 devices through the follower,
//! waits until the leader has stored the platform's acknowledgement, SIGKILLs the leader and
//! at once registers `BENCH_GAP` (default 200) more devices through the follower, one at a
//! time. Measured from the kill: the new leader's `hello`, its first event of the gap, the
//! last one; and whether every gap registration arrived as an event, under one seq.
//!
//! Run: `cargo bench --bench ha_failover` (needs `etcd`, Debian's etcd-server). `BENCH_RUNS`
//! (default 3) and `BENCH_GAP` override. Prints one JSON line.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::coap_peer::{register, Peer};
use common::etcd::EtcdCluster;
use common::platform_sim::PlatformSim;
use common::Gateway;
use serde_json::{json, Value};

/// A defect bound for any step, not a measurement.
const BOUND: Duration = Duration::from_secs(60);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < BOUND, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn replica(cluster: &EtcdCluster, member: &str, platform: &str) -> Gateway {
    common::replica(cluster, "/bench", member, 3, platform)
}

/// The seqs of `device_registered` frames by endpoint name.
fn registered(sim: &PlatformSim) -> HashMap<String, Vec<u64>> {
    let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
    for f in sim.frames() {
        if f["type"] == "device_registered" {
            let ep = f["device"]["ep"].as_str().unwrap_or_default().to_owned();
            seqs.entry(ep)
                .or_default()
                .push(f["seq"].as_u64().unwrap_or(0));
        }
    }
    seqs
}

fn run(gap: usize) -> Value {
    let cluster = EtcdCluster::start(3);
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let platform = format!("platform:\n  url: {:?}\n  reconnect_max_s: 1\n", sim.url());
    let a = replica(&cluster, "a", &platform);
    let b = replica(&cluster, "b", &platform);
    let hello = sim.wait_type("hello", None, BOUND).expect("a hello");
    let leader_name = hello["replica"].as_str().unwrap_or_default().to_owned();
    let (mut leader, follower) = if leader_name == "a" { (a, b) } else { (b, a) };
    let device = Peer::new(follower.addr());
    for i in 0..100 {
        register(&device, &format!("ep=before-{i}"), "</t>");
    }
    wait("the events before the kill", || {
        registered(&sim).len() >= 100
    });
    wait("the stored acknowledgement", || {
        cluster.stored_ack("/bench") > 0
    });
    let killed = Instant::now();
    leader.kill9();
    for i in 0..gap {
        register(&device, &format!("ep=gap-{i}"), "</t>");
    }
    let registered_in = killed.elapsed();
    let gap_seen = |sim: &PlatformSim| {
        registered(sim)
            .keys()
            .filter(|ep| ep.starts_with("gap-"))
            .count()
    };
    wait("the new leader's hello", || {
        sim.count(|f| f["type"] == "hello" && f["replica"] != leader_name.as_str()) == 1
    });
    let hello_after = killed.elapsed();
    wait("the first event of the gap", || gap_seen(&sim) >= 1);
    let first_after = killed.elapsed();
    wait("every event of the gap", || gap_seen(&sim) >= gap);
    let all_after = killed.elapsed();
    let seqs = registered(&sim);
    let one_seq_each = seqs.values().all(|s| {
        let mut s = s.clone();
        s.dedup();
        s.len() == 1
    });
    json!({
        "gap_registered_s": registered_in.as_secs_f64(),
        "new_hello_s": hello_after.as_secs_f64(),
        "first_gap_event_s": first_after.as_secs_f64(),
        "all_gap_events_s": all_after.as_secs_f64(),
        "gap_events": gap_seen(&sim),
        "one_seq_per_event": one_seq_each,
    })
}

fn main() {
    if !common::require_tool("etcd") || !common::require_tool("etcdctl") {
        println!(
            "{}",
            json!({"bench": "ha_failover", "skipped": "etcd not installed"})
        );
        return;
    }
    let runs = env_usize("BENCH_RUNS", 3);
    let gap = env_usize("BENCH_GAP", 200);
    let results: Vec<Value> = (0..runs).map(|_| run(gap)).collect();
    println!(
        "{}",
        json!({"bench": "ha_failover", "member_ttl_s": 3, "gap": gap, "runs": results})
    );
}
