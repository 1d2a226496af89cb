//! Device data of replicas on etcd (issue 22, `docs/ha-etcd.md` §8): each replica observes the
//! devices it owns, and the data reaches the platform through etcd and the leader's cluster
//! feed. Measures the `data` frames per second the platform receives from a fleet that
//! notifies once a second, the share each replica read, frames not relayed, and how much
//! etcd's database grew over the window (the history the data leaves until compaction).
//!
//! Each run starts a three-member etcd cluster on loopback ports, `platform-sim`, two
//! `coap-gateway` processes with the Observer on, and `device-sim` with `BENCH_DEVICES`
//! (default 2,000) devices registered through the follower, each observed on
//! `/sensors/temp`. After `BENCH_WARMUP_S` (15) it counts frames for `BENCH_WINDOW_S` (20).
//!
//! Run: `cargo bench --bench ha_data` (needs `etcd`, Debian's etcd-server). Prints one JSON
//! line. Loopback only; every wait is bounded.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::device_sim::DeviceSim;
use common::etcd::EtcdCluster;
use common::platform_sim::PlatformSim;
use common::Gateway;
use serde_json::{json, Value};

/// A defect bound for any step, not a measurement.
const BOUND: Duration = Duration::from_secs(120);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn replica(cluster: &EtcdCluster, member: &str, platform: &str) -> Gateway {
    common::replica(cluster, "/bench", member, 3, platform)
}

/// etcd's database size and the part of it in use, in bytes, as the first member reports them.
fn db_size(cluster: &EtcdCluster) -> (u64, u64) {
    let out = cluster.etcdctl(&["endpoint", "status", "-w", "json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let field = |name: &str| status[0]["Status"][name].as_u64().unwrap_or(0);
    (field("dbSize"), field("dbSizeInUse"))
}

/// The relay's warnings about dropped batches (the replicas run without the metrics endpoint).
fn relay_drops(gw: &Gateway) -> usize {
    gw.log_text().matches("data relay:").count()
}

fn main() {
    if !common::require_tool("etcd") || !common::require_tool("etcdctl") {
        println!(
            "{}",
            json!({"bench": "ha_data", "skipped": "etcd not installed"})
        );
        return;
    }
    let devices = env_u64("BENCH_DEVICES", 2_000);
    let warmup = Duration::from_secs(env_u64("BENCH_WARMUP_S", 15));
    let window = Duration::from_secs(env_u64("BENCH_WINDOW_S", 20));

    let cluster = EtcdCluster::start(3);
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let platform = format!(
        "platform:\n  url: {:?}\n  reconnect_max_s: 1\n  queue_capacity: 100000\n\
         observer:\n  enabled: true\npinger:\n  enabled: false\n",
        sim.url()
    );
    let a = replica(&cluster, "a", &platform);
    let b = replica(&cluster, "b", &platform);
    let hello = sim.wait_type("hello", None, BOUND).expect("a hello");
    let leader_name = hello["replica"].as_str().unwrap_or_default().to_owned();
    let (leader, follower) = if leader_name == "a" { (a, b) } else { (b, a) };
    let mut fleet = DeviceSim::spawn(
        follower.addr(),
        devices as usize,
        &["--lt", "3600", "--prefix", "ha-data-"],
    );
    assert!(fleet.ready(BOUND), "device-sim ready");
    std::thread::sleep(warmup);

    let data = |sim: &PlatformSim| sim.count(|f| f["type"] == "data") as u64;
    let (frames0, db0, t0) = (data(&sim), db_size(&cluster), Instant::now());
    let mut per_second = Vec::new();
    let mut last = frames0;
    while t0.elapsed() < window {
        std::thread::sleep(Duration::from_secs(1));
        let now = data(&sim);
        per_second.push(now - last);
        last = now;
    }
    let wall = t0.elapsed().as_secs_f64();
    let frames = data(&sim) - frames0;
    let db1 = db_size(&cluster);
    let grown = db1.1.saturating_sub(db0.1);
    let rate = frames as f64 / wall;
    // Which replica read what: the leader's own Observer puts on etcd like the follower's, so
    // each replica's share is read from its log's Observer line.
    let observed = |gw: &Gateway| {
        gw.log_text()
            .lines()
            .rev()
            .find_map(|l| {
                l.split("observer: ")
                    .nth(1)?
                    .split(" devices,")
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    let result = json!({
        "bench": "ha_data",
        "devices": devices,
        "window_s": (wall * 10.0).round() / 10.0,
        "frames_per_s": rate.round(),
        "expected_per_s": devices,
        "per_second_min": per_second.iter().min(),
        "per_second_max": per_second.iter().max(),
        "observed_by_leader": observed(&leader),
        "observed_by_follower": observed(&follower),
        "relay_warnings": relay_drops(&leader) + relay_drops(&follower),
        "etcd_db_in_use_growth_bytes": grown,
        "etcd_db_bytes": [db0.0, db1.0],
        "etcd_db_growth_mb_per_hour": ((grown as f64 / wall) * 3600.0 / 1e6).round(),
    });
    println!("{result}");
    fleet.sigterm();
}
