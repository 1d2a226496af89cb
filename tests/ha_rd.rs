//! Gateway replicas sharing one registry on etcd (issue 22, `docs/ha-etcd.md`), as devices and
//! operators see them: the real `coap-gateway` binary, twice, with `registry.backend: etcd` on
//! a three-member etcd cluster the test starts on loopback, spoken to over CoAP.
//!
//! - A registration at replica A is found by a lookup at B, updated at B, removed at A.
//! - The same name registered at A and B at once: one registration; from one host both get
//!   its location, from two hosts one gets 2.01 and the other 4.03 (RFC 9176 §7.5, FCFR).
//! - SIGKILL of the etcd Raft leader during a registration load: every acknowledged
//!   registration is in etcd afterwards (read with `etcdctl`), and writes resume.
//! - SIGKILL of replica A: B takes A's devices over (a silent one goes to status 0, a live one
//!   stays 1 and is pinged by B); A restarts, rejoins, and its devices go back to it.
//! - etcd gone: writes get 5.03 with Max-Age, lookups are still served from the index,
//!   `/health` says 503 `read_only`.
//! - TLS to etcd: a replica with the CA and a client certificate registers through an etcd
//!   that demands client certificates; one without a certificate, or trusting another CA,
//!   does not start and says why, and no private key reaches a log.
//! - The platform sees one gateway: only the elected replica holds the link, every event
//!   arrives once whichever replica took the request, and when the leader is killed the other
//!   connects (hello, a snapshot holding every device) and carries on.
//! - Discovery: each configured target is asked by the replica that owns its address only,
//!   and registered once.
//! - A new leader whose resume point etcd has compacted gives those events up and restates
//!   every device in its snapshot.
//! - Device data: each replica reads only the devices it owns, and the leader sends the data
//!   of both (the follower's through etcd); after a SIGKILL of the leader the other replica
//!   reads its devices too, and what it read while no replica led still arrives, each value
//!   under one seq; when the killed replica returns, its device goes back to it alone.
//! - A leader change loses no event: what the follower acknowledged while no replica held the
//!   link arrives as events, every event under one seq, and each seq is the etcd revision that
//!   wrote the event's record (read with `etcdctl`).

mod common;
#[path = "common/frame_time.rs"]
mod frame_time;

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coap_gateway::registry::etcd::ownership;
use common::coap_peer::*;
use common::etcd::EtcdCluster;
use common::ping_target::PingTarget;
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};

/// A defect bound for anything to happen on a loaded 2-core box, not a measurement.
const WAIT: Duration = Duration::from_secs(30);
const TTL_S: u64 = 3;

fn cluster() -> Option<EtcdCluster> {
    if !common::require_tool("etcd") || !common::require_tool("etcdctl") {
        return None;
    }
    Some(EtcdCluster::start(3))
}

fn replica(cluster: &EtcdCluster, member: &str, extra: &str) -> Gateway {
    common::replica(cluster, "/ha", member, TTL_S, extra)
}

fn until(what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn status_at(gw: &Gateway, ep: &str) -> Option<String> {
    ep_link(&Peer::new(gw.addr()), ep).and_then(|l| l.get("status").map(str::to_string))
}

#[test]
fn a_registration_at_one_replica_is_found_updated_and_removed_at_the_other() {
    let Some(cluster) = cluster() else { return };
    let a = replica(&cluster, "a", "");
    let b = replica(&cluster, "b", "");
    let device = Peer::new(a.addr());
    let location = register(
        &device,
        "ep=lamp-1&lt=300&et=oic.d.light",
        "</light>;rt=\"light\"",
    );
    // Visible at B (the watch feeds B's index within milliseconds; polled within the bound).
    let found = lookup_until(&Peer::new(b.addr()), "/rd-lookup/ep?ep=lamp-1", WAIT, |l| {
        !l.is_empty()
    });
    assert_eq!(found.len(), 1, "lamp-1 at B");
    assert_eq!(
        found[0].target, location,
        "the same registration resource at B"
    );
    assert_eq!(found[0].get("base"), Some(device.derived_base().as_str()));
    let resources = res_targets(&Peer::new(b.addr()), "/rd-lookup/res?rt=light");
    assert_eq!(resources, [format!("{}/light", device.derived_base())]);
    // The device updates through B at the location A gave (RFC 9176 §5.3.1).
    let device_at_b = Peer::with_socket(device.sock.try_clone().expect("clone"), b.addr());
    let updated = device_at_b.request(&Req::post(&format!("{location}?lt=600&et=oic.d.dimmer")));
    assert_eq!(updated.code, "2.04", "update at B: {}", updated.text());
    let at_a = lookup_until(&Peer::new(a.addr()), "/rd-lookup/ep?ep=lamp-1", WAIT, |l| {
        l.first().and_then(|l| l.get("et")) == Some("oic.d.dimmer")
    });
    assert_eq!(at_a[0].get("et"), Some("oic.d.dimmer"), "A sees B's update");
    // Removed at A: gone at B, and from etcd (read with etcdctl).
    let removed = device.request(&Req::delete(&location));
    assert_eq!(removed.code, "2.02", "{}", removed.text());
    let gone = lookup_until(&Peer::new(b.addr()), "/rd-lookup/ep?ep=lamp-1", WAIT, |l| {
        l.is_empty()
    });
    assert!(gone.is_empty());
    let left: Vec<String> = cluster
        .keys("/ha/")
        .into_iter()
        .filter(|k| k.contains("/reg/") || k.contains("/name/"))
        .collect();
    assert!(left.is_empty(), "etcd still holds {left:?}");
}

#[test]
fn the_same_name_at_both_replicas_at_once_gives_one_registration() {
    let Some(cluster) = cluster() else { return };
    // The policy users run: loopback is not exempt, so 127.0.0.1 and 127.0.0.2 are two hosts
    // under every limit, as devices on a LAN would be.
    let unexempt = "limits:\n  exempt_loopback: false\n";
    let a = replica(&cluster, "a", unexempt);
    let b = replica(&cluster, "b", unexempt);
    for round in 0..10 {
        // One host (a device retrying through the other replica, from another port after a
        // reboot): one registration, both answers 2.01 with its location.
        let ep = format!("same-host-{round}");
        let via_a = Peer::new(a.addr());
        let via_b = Peer::new(b.addr());
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| via_a.post_links(&format!("/rd?ep={ep}"), "</t>"));
            let tb = s.spawn(|| via_b.post_links(&format!("/rd?ep={ep}"), "</t>"));
            (ta.join().expect("A"), tb.join().expect("B"))
        });
        assert_eq!((ra.code.as_str(), rb.code.as_str()), ("2.01", "2.01"));
        assert_eq!(ra.location(), rb.location(), "round {round}: one location");

        // Two hosts: First Come First Remembered, one of them wins.
        let ep = format!("two-hosts-{round}");
        let first = Peer::with_socket(UdpSocket::bind("127.0.0.1:0").expect("bind"), a.addr());
        let second = Peer::with_socket(UdpSocket::bind("127.0.0.2:0").expect("bind"), b.addr());
        let (r1, r2) = std::thread::scope(|s| {
            let t1 = s.spawn(|| first.post_links(&format!("/rd?ep={ep}"), "</t>"));
            let t2 = s.spawn(|| second.post_links(&format!("/rd?ep={ep}"), "</t>"));
            (t1.join().expect("1"), t2.join().expect("2"))
        });
        let mut codes = [r1.code.clone(), r2.code.clone()];
        codes.sort();
        assert_eq!(
            codes,
            ["2.01", "4.03"],
            "round {round}: {} / {}",
            r1.text(),
            r2.text()
        );
        let winner = if r1.code == "2.01" { &first } else { &second };
        for gw in [&a, &b] {
            let links = lookup_until(
                &Peer::new(gw.addr()),
                &format!("/rd-lookup/ep?ep={ep}"),
                WAIT,
                |l| !l.is_empty(),
            );
            assert_eq!(links.len(), 1);
            assert_eq!(
                links[0].get("base"),
                Some(winner.derived_base().as_str()),
                "round {round}: the winner's"
            );
        }
    }
    assert_eq!(cluster.keys("/ha/name/").len(), 20);
}

#[test]
fn every_acknowledged_registration_survives_a_sigkill_of_the_etcd_leader() {
    let Some(mut cluster) = cluster() else { return };
    let a = replica(&cluster, "a", "");
    let b = replica(&cluster, "b", "");
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, addr) in [(0, a.addr()), (1, b.addr()), (2, a.addr()), (3, b.addr())] {
        let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let peer = Peer::new(addr).with_budget(Duration::from_secs(10));
            for i in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ep = format!("load-{w}-{i}");
                match peer.try_request(&Req::post(&format!("/rd?ep={ep}")).links("</t>")) {
                    Ok(resp) if resp.code == "2.01" => {
                        acked.lock().expect("lock").insert(ep);
                    }
                    Ok(resp) => {
                        assert_eq!(resp.code, "5.03", "{ep}: {}", resp.text());
                        assert!(resp.max_age.is_some(), "5.03 with Max-Age");
                        *refused.lock().expect("lock") += 1;
                    }
                    Err(_) => {}
                }
            }
        }));
    }
    until("100 acknowledged registrations", || {
        acked.lock().expect("lock").len() >= 100
    });
    let leader = cluster.leader().expect("a Raft leader");
    cluster.kill(leader);
    let killed_at = Instant::now();
    let before = acked.lock().expect("lock").len();
    // Writes resume after the election: more registrations are acknowledged.
    let resumed = until("writes to resume", || {
        acked.lock().expect("lock").len() >= before + 50
    });
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    let names: BTreeSet<String> = cluster
        .keys("/ha/name/")
        .into_iter()
        .filter_map(|k| k.rsplit('/').next().map(str::to_owned))
        .collect();
    let acked = acked.lock().expect("lock");
    let missing: Vec<&String> = acked.iter().filter(|ep| !names.contains(*ep)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in etcd: {missing:?}"
    );
    eprintln!(
        "{} acknowledged ({} refused with 5.03) across the leader kill; writes resumed {:?} after it ({:?} since the kill)",
        acked.len(),
        refused.lock().expect("lock"),
        resumed,
        killed_at.elapsed()
    );
}

/// A registered test device whose socket answers pings.
struct Device {
    /// Holds the device's socket (the target reads a clone).
    _peer: Peer,
    target: PingTarget,
}

impl Device {
    fn register(gw: &Gateway, ep: &str) -> (Device, u64) {
        Device::register_links(gw, ep, "</t>")
    }

    fn register_links(gw: &Gateway, ep: &str, links: &str) -> (Device, u64) {
        let peer = Peer::new(gw.addr());
        let location = register(&peer, &format!("ep={ep}&lt=600"), links);
        let id = location
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a /reg/N location");
        let target = PingTarget::start(&peer.sock);
        (
            Device {
                _peer: peer,
                target,
            },
            id,
        )
    }
}

const PINGER: &str = "pinger:\n  enabled: true\n  interval_s: 1\n  timeout_ms: 200\n  attempts: 2\n  max_in_flight: 16\n";

#[test]
fn a_killed_replicas_devices_are_taken_over_and_given_back_when_it_returns() {
    let Some(cluster) = cluster() else { return };
    let mut a = replica(&cluster, "a", PINGER);
    let b = replica(&cluster, "b", PINGER);
    let members = ["a", "b"];
    // Register until A owns two devices: one to go silent, one to stay live.
    let mut devices: HashMap<&str, (Device, u64)> = HashMap::new();
    let mut owned_by_a = Vec::new();
    for i in 0..64 {
        let ep = format!("dev-{i}");
        let (device, id) = Device::register(&a, &ep);
        let owner = ownership::owner(&members, &id.to_string()).expect("an owner");
        if owner == "a" && owned_by_a.len() < 2 {
            owned_by_a.push(ep.clone());
            devices.insert(
                if owned_by_a.len() == 1 {
                    "silent"
                } else {
                    "live"
                },
                (device, id),
            );
        }
        if owned_by_a.len() == 2 {
            break;
        }
    }
    assert_eq!(owned_by_a.len(), 2, "A owns some of 64 devices");
    let (silent, _) = &devices["silent"];
    let (live, _) = &devices["live"];
    let a_addr = a.addr();
    // While A lives, A pings its devices and B does not.
    let watching = Instant::now();
    until("A to ping its devices", || {
        live.target.pinged_by(watching).contains(&a_addr)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        live.target.pinged_by(watching),
        BTreeSet::from([a_addr]),
        "only the owner pings"
    );

    a.kill9();
    let killed = Instant::now();
    silent.target.set_silent(true);
    // B takes over within member_ttl_s plus one ping interval (polled within the bound).
    let to_zero = until("B to mark the silent device 0", || {
        status_at(&b, &owned_by_a[0]).as_deref() == Some("0")
    });
    assert!(
        live.target.pinged_by(killed).contains(&b.addr()),
        "B pings the live one"
    );
    assert_eq!(
        status_at(&b, &owned_by_a[1]).as_deref(),
        Some("1"),
        "the live one stays 1"
    );
    eprintln!("takeover: silent device at 0 {to_zero:?} after the SIGKILL of A");

    // A returns (same member name: it waits for its old key to lapse) and takes its devices
    // back. B lets go as soon as it sees A's member key; A starts pinging a second later
    // (the hand-over delay), so from A's first ping on only A pings the device.
    let a2 = replica(&cluster, "a", PINGER);
    let a2_addr = a2.addr();
    until("A to ping its device again", || {
        live.target.pinged_by(killed).contains(&a2_addr)
    });
    let first = live.target.first_from(a2_addr).expect("A pinged");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        live.target.pinged_by(first),
        BTreeSet::from([a2_addr]),
        "after the hand-over only A pings its device"
    );
    drop(devices);
}

/// The `platform:` section of a replica linked to `sim`, then `extra`.
fn linked_to(sim: &PlatformSim, extra: &str) -> String {
    format!(
        "platform:\n  url: {:?}\n  reconnect_max_s: 1\n{extra}",
        sim.url()
    )
}

const OBSERVE_EVERY_SECOND: &str = "observer:\n  enabled: true\n  poll_interval_s: 1\n";

/// A platform and replicas `a` and `b` linked to it, told apart by the first `hello`.
struct LinkedPair {
    sim: PlatformSim,
    leader: Gateway,
    follower: Gateway,
    /// `hello.replica` of the first link: the leader's member name.
    leader_name: String,
    hello: serde_json::Value,
}

impl LinkedPair {
    /// Start the platform and both replicas (with `extra` config) and wait for the first hello.
    fn start(cluster: &EtcdCluster, extra: &str) -> LinkedPair {
        LinkedPair::start_with(cluster, extra, &[])
    }

    /// [`LinkedPair::start`] with platform-sim started with `sim_args`.
    fn start_with(cluster: &EtcdCluster, extra: &str, sim_args: &[&str]) -> LinkedPair {
        let sim = PlatformSim::start_args("127.0.0.1:0", None, sim_args);
        let platform = linked_to(&sim, extra);
        let a = replica(cluster, "a", &platform);
        let b = replica(cluster, "b", &platform);
        let hello = sim.wait_type("hello", None, WAIT).expect("a hello");
        let leader_name = hello["replica"].as_str().expect("hello.replica").to_owned();
        let (leader, follower) = if leader_name == "a" { (a, b) } else { (b, a) };
        LinkedPair {
            sim,
            leader,
            follower,
            leader_name,
            hello,
        }
    }

    /// The `hello` of the replica that took the link over from the first leader.
    fn next_hello(&self) -> serde_json::Value {
        self.sim
            .wait_for(WAIT, |f| {
                f["type"] == "hello" && f["replica"] != self.leader_name.as_str()
            })
            .expect("the other replica's hello")
    }
}

/// Wait until the leader has stored the platform's acknowledgement on etcd (every 500 ms):
/// the next leader resumes there.
fn wait_for_stored_ack(cluster: &EtcdCluster) {
    until("the platform's acknowledgement on etcd", || {
        cluster.stored_ack("/ha") > 0
    });
}

#[test]
fn only_the_leader_holds_the_platform_link_and_the_other_takes_it_over() {
    let Some(cluster) = cluster() else { return };
    let LinkedPair {
        sim,
        mut leader,
        follower,
        leader_name,
        hello,
    } = LinkedPair::start(&cluster, "");
    assert_eq!(hello["gateway"], "test-gw", "the cluster's id");
    until("the leader to say so", || {
        leader
            .log_text()
            .contains(&format!("cluster: {leader_name} is the leader"))
    });
    // A registration at either replica reaches the platform once, through the leader.
    for (ep, gw) in [("via-leader", &leader), ("via-follower", &follower)] {
        register(&Peer::new(gw.addr()), &format!("ep={ep}"), "</t>");
        sim.wait_type("device_registered", Some(ep), WAIT)
            .unwrap_or_else(|| panic!("device_registered {ep}"));
    }
    std::thread::sleep(Duration::from_secs(1));
    for ep in ["via-leader", "via-follower"] {
        let n = sim.count(|f| f["type"] == "device_registered" && f["device"]["ep"] == ep);
        assert_eq!(n, 1, "{ep} announced once");
    }
    assert_eq!(
        sim.count(|f| f["type"] == "hello"),
        1,
        "one gateway connected"
    );

    // The leader dies: the other replica connects within the lease and a dial, and its
    // snapshot holds both devices.
    leader.kill9();
    until("a second hello", || {
        sim.count(|f| f["type"] == "hello") == 2
    });
    let snapshot = sim
        .wait_for(WAIT, |f| {
            f["type"] == "snapshot"
                && f["devices"].as_array().is_some_and(|d| {
                    d.iter().any(|x| x["ep"] == "via-leader")
                        && d.iter().any(|x| x["ep"] == "via-follower")
                })
        })
        .expect("the new leader's snapshot holds every device");
    assert_eq!(snapshot["last"], true);
    register(&Peer::new(follower.addr()), "ep=after-failover", "</t>");
    sim.wait_type("device_registered", Some("after-failover"), WAIT)
        .expect("events flow through the new leader");
}

/// Every registration on etcd by `ep`: (create revision, mod revision), read with `etcdctl`.
fn revisions_by_ep(cluster: &EtcdCluster) -> HashMap<String, (u64, u64)> {
    use base64::Engine;
    let out = cluster.etcdctl(&["get", "--prefix", "/ha/reg/", "-w", "json"]);
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl -w json");
    let b64 = base64::engine::general_purpose::STANDARD;
    listing["kvs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let value = b64
                .decode(kv["value"].as_str().expect("value"))
                .expect("base64");
            let record: serde_json::Value = serde_json::from_slice(&value).expect("record");
            let ep = record["reg"]["ep"].as_str().expect("ep").to_owned();
            let rev = |k: &str| kv[k].as_u64().expect("revision");
            (ep, (rev("create_revision"), rev("mod_revision")))
        })
        .collect()
}

#[test]
fn a_leader_change_loses_no_event_and_gives_none_a_second_seq() {
    let Some(cluster) = cluster() else { return };
    let mut pair = LinkedPair::start(&cluster, "");
    assert_eq!(pair.hello["seq_scheme"], "etcd-revision");
    let device = Peer::new(pair.follower.addr());
    let sim = &pair.sim;
    let mut locations = HashMap::new();
    for i in 0..10 {
        let ep = format!("before-{i}");
        locations.insert(ep.clone(), register(&device, &format!("ep={ep}"), "</t>"));
        sim.wait_type("device_registered", Some(&ep), WAIT)
            .unwrap_or_else(|| panic!("device_registered {ep}"));
    }
    wait_for_stored_ack(&cluster);

    // The leader dies. While no replica holds the link, the follower acknowledges
    // registrations, an update and a removal: their events must reach the platform as events.
    pair.leader.kill9();
    let sim = &pair.sim;
    let mut gap = Vec::new();
    for i in 0..10 {
        let ep = format!("gap-{i}");
        register(&device, &format!("ep={ep}"), "</t>");
        gap.push(ep);
    }
    let updated = device.request(&Req::post(&format!("{}?lt=600", locations["before-0"])));
    assert_eq!(updated.code, "2.04", "{}", updated.text());
    let removed = device.request(&Req::delete(&locations["before-1"]));
    assert_eq!(removed.code, "2.02", "{}", removed.text());
    let second = pair.next_hello();
    assert_eq!(second["gateway"], "test-gw", "the same cluster id");
    register(&device, "ep=after", "</t>");
    for ep in gap.iter().map(String::as_str).chain(["after"]) {
        sim.wait_type("device_registered", Some(ep), WAIT)
            .unwrap_or_else(|| panic!("device_registered {ep} as an event"));
    }
    sim.wait_type("device_updated", Some("before-0"), WAIT)
        .expect("device_updated");
    sim.wait_type("device_removed", Some("before-1"), WAIT)
        .expect("device_removed");

    // One seq, one event: a frame sent again carries the seq it had, with the same content.
    let mut by_seq: HashMap<u64, (String, String)> = HashMap::new();
    let mut seqs_of: HashMap<(String, String), BTreeSet<u64>> = HashMap::new();
    for f in sim.frames() {
        let kind = f["type"].as_str().unwrap_or_default().to_owned();
        if !kind.starts_with("device_") {
            continue;
        }
        let seq = f["seq"].as_u64().expect("a numbered event");
        // `device_removed` names the device at the top level.
        let ep = f["device"]["ep"]
            .as_str()
            .or(f["ep"].as_str())
            .expect("an ep")
            .to_owned();
        let seen = by_seq
            .entry(seq)
            .or_insert_with(|| (kind.clone(), ep.clone()));
        assert_eq!(
            seen,
            &(kind.clone(), ep.clone()),
            "seq {seq} names two events"
        );
        seqs_of.entry((kind, ep)).or_default().insert(seq);
    }
    for (event, seqs) in &seqs_of {
        assert_eq!(seqs.len(), 1, "{event:?} under seqs {seqs:?}");
    }
    // The seqs are etcd's history: a registration's event is numbered by the revision that
    // created its record, the update's by the one that wrote it last.
    let revisions = revisions_by_ep(&cluster);
    for ep in gap.iter().map(String::as_str).chain(["after", "before-2"]) {
        let seq = *seqs_of[&("device_registered".to_owned(), ep.to_owned())]
            .first()
            .expect("seq");
        assert_eq!(seq >> 20, revisions[ep].0, "{ep}: seq {seq}");
    }
    let seq = *seqs_of[&("device_updated".to_owned(), "before-0".to_owned())]
        .first()
        .expect("seq");
    assert_eq!(seq >> 20, revisions["before-0"].1, "before-0's update");
    assert!(!revisions.contains_key("before-1"), "removed from etcd");
    let gaps: Vec<String> = sim
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("gap:"))
        .collect();
    assert!(gaps.is_empty(), "the platform saw gaps: {gaps:?}");
}

/// A command's result that the platform had not acknowledged when the leader died reaches it
/// from the next leader, under the seq it had: the leader's results take the data's path
/// through etcd, and the next leader's feed resumes at the stored acknowledgement.
#[test]
fn a_command_result_the_platform_had_not_acknowledged_survives_a_leader_kill() {
    let Some(cluster) = cluster() else { return };
    let mut pair = LinkedPair::start_with(&cluster, "", &["--drop-at-type", "command_result"]);
    let (_device, _) = Device::register(&pair.follower, "commanded");
    pair.sim
        .wait_type("device_registered", Some("commanded"), WAIT)
        .expect("device_registered");
    wait_for_stored_ack(&cluster);

    pair.sim.send_line(
        r#"{"type":"command","id":"cmd-1","ep":"commanded","method":"GET","path":"/t"}"#,
    );
    // The platform reads the result and goes down before acknowledging it; so does the
    // leader, before its link could dial again (the first re-dial waits at least 0.5 s).
    assert!(
        pair.sim
            .wait_stderr("dropping the connection at a command_result frame", WAIT),
        "{:?}",
        pair.sim.stderr_lines()
    );
    pair.leader.kill9();
    let leader_hellos = pair
        .sim
        .count(|f| f["type"] == "hello" && f["replica"] == pair.leader_name.as_str());
    assert_eq!(leader_hellos, 1, "the killed leader never dialled again");
    pair.next_hello();
    let results = |sim: &PlatformSim| -> Vec<serde_json::Value> {
        sim.frames()
            .into_iter()
            .filter(|f| f["type"] == "command_result" && f["id"] == "cmd-1")
            .collect()
    };
    until("the result again, from the next leader", || {
        results(&pair.sim).len() >= 2
    });
    let results = results(&pair.sim);
    assert_eq!(results[0]["code"], "2.05", "{results:?}");
    assert_eq!(results[0], results[1], "the same frame, seq included");
    assert!(results[0]["seq"].as_u64().is_some(), "{results:?}");
}

#[test]
fn without_etcd_writes_get_5_03_lookups_are_served_and_health_says_read_only() {
    let Some(mut cluster) = cluster() else { return };
    let gw = Gateway::start_with_http(GatewayOptions {
        extra_yaml: cluster.registry_yaml("/ha", "a", TTL_S, ""),
        ..Default::default()
    });
    let device = Peer::new(gw.addr());
    register(&device, "ep=before-outage", "</t>");
    let health = common::http::get(gw.http_addr(), "/health");
    assert_eq!(health.status, 200, "{}", health.text());
    for member in 0..3 {
        cluster.kill(member);
    }
    let refused = Peer::new(gw.addr()).post_links("/rd?ep=during-outage", "</t>");
    assert_eq!(refused.code, "5.03", "{}", refused.text());
    assert!(refused.max_age.is_some_and(|s| s > 0), "5.03 with Max-Age");
    assert!(
        ep_link(&Peer::new(gw.addr()), "before-outage").is_some(),
        "lookups answered from the index"
    );
    let health = common::http::get(gw.http_addr(), "/health");
    assert_eq!(health.status, 503, "{}", health.text());
    let body: serde_json::Value = serde_json::from_str(&health.text()).expect("JSON");
    assert_eq!(body["status"], "read_only");
    assert_eq!(body["registry"]["writable"], false);
    assert_eq!(body["registry"]["etcd"]["member"], "a");
}

#[test]
fn a_replica_reaches_etcd_over_tls_and_one_without_the_right_certificates_does_not() {
    if !common::require_tool("etcd") || !common::require_tool("etcdctl") {
        return;
    }
    let cluster = EtcdCluster::start_tls(1);
    let tls = cluster.client_tls().expect("tls");
    let url = cluster.client_urls()[0].clone();
    let section = |lines: &str| cluster.registry_yaml("/ha", "a", TTL_S, lines);
    let with_cert = section(&format!(
        "    ca_file: {:?}\n    cert_file: {:?}\n    key_file: {:?}\n",
        tls.ca, tls.cert, tls.key
    ));
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: with_cert,
        ..Default::default()
    });
    register(&Peer::new(gw.addr()), "ep=over-tls", "</t>");
    let keys = cluster.keys("/ha/name/");
    assert!(
        keys.iter().any(|k| k.ends_with("over-tls")),
        "etcd (read over TLS by etcdctl) holds the name: {keys:?}"
    );
    assert!(!gw.log_text().contains("PRIVATE KEY"));
    // rd-dump reads it over TLS too.
    let dump = std::process::Command::new(env!("CARGO_BIN_EXE_rd-dump"))
        .args(["--etcd", &url, "--etcd-prefix", "/ha", "--etcd-ca"])
        .arg(&tls.ca)
        .arg("--etcd-cert")
        .arg(&tls.cert)
        .arg("--etcd-key")
        .arg(&tls.key)
        .output()
        .expect("rd-dump");
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success() && text.contains("over-tls"),
        "rd-dump --etcd over TLS: {text} {}",
        String::from_utf8_lossy(&dump.stderr)
    );

    // No client certificate, then a CA that did not sign etcd's: no start, and the reason.
    let dir = tempfile::tempdir().expect("tempdir");
    let rogue = common::pki::Pki::new(dir.path(), "rogue-ca");
    drop(rogue);
    let rogue_ca = dir.path().join("rogue-ca.pem");
    for (lines, case) in [
        (
            format!("    ca_file: {:?}\n", tls.ca),
            "no client certificate",
        ),
        (
            format!(
                "    ca_file: {:?}\n    cert_file: {:?}\n    key_file: {:?}\n",
                rogue_ca, tls.cert, tls.key
            ),
            "another CA",
        ),
    ] {
        let config = common::write_config(
            dir.path(),
            &dir.path().join("data"),
            &GatewayOptions {
                extra_yaml: section(&lines),
                ..Default::default()
            },
        );
        let mut child = std::process::Command::new(common::gateway_bin())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("err.log")).expect("log"))
            .spawn()
            .expect("spawn");
        let mut log = String::new();
        let start = Instant::now();
        while !log.contains("registry: waiting for etcd") && start.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(100));
            log = std::fs::read_to_string(dir.path().join("err.log")).unwrap_or_default();
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(log.contains("registry: waiting for etcd"), "{case}: {log}");
        assert!(
            !log.contains("rd listening"),
            "{case}: serves nothing: {log}"
        );
        assert!(!log.contains("PRIVATE KEY"), "{case}");
    }
}

#[test]
fn each_replica_observes_its_own_devices_and_the_leader_sends_their_data() {
    let Some(cluster) = cluster() else { return };
    let mut pair = LinkedPair::start(&cluster, OBSERVE_EVERY_SECOND);
    let members = ["a", "b"];
    let follower_name = if pair.leader_name == "a" { "b" } else { "a" };
    // Devices with a polled sensor link, registered at the follower until each replica owns
    // one (the owner is the rendezvous rule's, as in the gateway).
    let mut devices: HashMap<String, (Device, &str)> = HashMap::new();
    for i in 0..64 {
        let ep = format!("obs-{i}");
        let (device, id) = Device::register_links(&pair.follower, &ep, "</t>;if=sensor");
        let owner = ownership::owner(&members, &id.to_string()).expect("an owner");
        devices.insert(ep, (device, owner));
        let owners: BTreeSet<&str> = devices.values().map(|(_, o)| *o).collect();
        if owners.len() == 2 {
            break;
        }
    }
    let by = |owner: &str| -> String {
        devices
            .iter()
            .find(|(_, (_, o))| *o == owner)
            .map(|(ep, _)| ep.clone())
            .expect("a device of that owner")
    };
    let (of_leader, of_follower) = (by(pair.leader_name.as_str()), by(follower_name));
    let data = |sim: &PlatformSim, ep: &str| {
        sim.count(|f| f["type"] == "data" && f["ep"] == ep && f["path"] == "/t")
    };
    until("data of every device, through the leader", || {
        devices.keys().all(|ep| data(&pair.sim, ep) >= 2)
    });
    // Each device is read by its owner only: the follower's device by the follower, whose
    // data reached the platform through the leader's link (the only one).
    let since = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let addr_of = |name: &str| {
        if name == pair.leader_name {
            pair.leader.addr()
        } else {
            pair.follower.addr()
        }
    };
    for (ep, (device, owner)) in &devices {
        assert_eq!(
            device.target.read_by(since),
            BTreeSet::from([addr_of(owner)]),
            "{ep} is read by its owner {owner} only"
        );
    }
    assert_eq!(pair.sim.count(|f| f["type"] == "hello"), 1);

    // The leader dies: the follower takes the link and the leader's devices over. What the
    // follower read while no replica held the link reaches the platform too, through etcd.
    wait_for_stored_ack(&cluster);
    let before_kill = data(&pair.sim, &of_follower);
    pair.leader.kill9();
    let killed = Instant::now();
    let killed_ms = now_ms();
    let hello = pair.next_hello();
    let hello_ms = now_ms();
    assert_eq!(hello["replica"], follower_name);
    until("the leader's device read by the follower", || {
        devices[&of_leader]
            .0
            .target
            .read_by(killed)
            .contains(&pair.follower.addr())
    });
    until("data of both devices through the new leader", || {
        data(&pair.sim, &of_leader) > 0
            && pair.sim.count(|f| {
                f["type"] == "data" && f["ep"] == of_leader.as_str() && at_of(f) > hello_ms
            }) >= 2
    });
    let in_gap = pair.sim.count(|f| {
        f["type"] == "data"
            && f["ep"] == of_follower.as_str()
            && (killed_ms + 500..hello_ms.saturating_sub(500)).contains(&at_of(f))
    });
    assert!(
        hello_ms - killed_ms >= 2_000,
        "the hand-over took under 2 s: no gap to show"
    );
    if in_gap == 0 {
        for f in pair
            .sim
            .frames()
            .iter()
            .filter(|f| f["ep"] == of_follower.as_str())
        {
            eprintln!("{} {} {}", f["seq"], f["at"], at_of(f));
        }
        eprintln!("killed {killed_ms} hello {hello_ms}");
    }
    assert!(
        in_gap > 0,
        "values read while no replica led arrive after the hand-over ({before_kill} before the kill)"
    );
    // Each value once: no seq twice.
    let seqs: Vec<u64> = pair
        .sim
        .frames()
        .iter()
        .filter(|f| f["type"] == "data")
        .filter_map(|f| f["seq"].as_u64())
        .collect();
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), seqs.len(), "every data frame once");

    // The killed replica returns under its name and takes its device back: the survivor lets
    // go when it sees the member key, the returning one reads 1 s later (the hand-over delay),
    // so from its first read on only it reads the device.
    let back = replica(
        &cluster,
        &pair.leader_name,
        &linked_to(&pair.sim, OBSERVE_EVERY_SECOND),
    );
    let target = &devices[&of_leader].0.target;
    until("the returning replica to read its device", || {
        target.first_read_from(back.addr()).is_some()
    });
    let first = target.first_read_from(back.addr()).expect("read");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        target.read_by(first),
        BTreeSet::from([back.addr()]),
        "after the hand-over only the owner reads its device"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A frame's `at` in Unix ms (0 when it has none).
fn at_of(frame: &serde_json::Value) -> u64 {
    frame["at"]
        .as_str()
        .and_then(frame_time::at_ms)
        .unwrap_or(0)
}

#[test]
fn each_discovery_target_is_asked_by_its_owner_only_and_registered_once() {
    let Some(cluster) = cluster() else { return };
    // Devices that do not register themselves: bare sockets answering /.well-known/core.
    let sockets: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let devices: Vec<(SocketAddr, PingTarget)> = sockets
        .iter()
        .map(|s| (s.local_addr().expect("addr"), PingTarget::start(s)))
        .collect();
    let list: Vec<String> = devices
        .iter()
        .map(|(a, _)| format!("{:?}", a.to_string()))
        .collect();
    let discovery = format!(
        "discovery:\n  enabled: true\n  interval_s: 1\n  lifetime_s: 60\n  timeout_ms: 500\n  \
         targets: [{}]\npinger:\n  enabled: false\n",
        list.join(", ")
    );
    let a = replica(&cluster, "a", &discovery);
    let b = replica(&cluster, "b", &discovery);
    let lookup_all = || lookup(&Peer::new(a.addr()), "/rd-lookup/ep");
    until("every device discovered", || {
        lookup_all().len() == devices.len()
    });
    // Three rounds: each device is asked by the replica that owns its address, never by both.
    let since = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let members = ["a", "b"];
    let mut askers = BTreeSet::new();
    for (addr, target) in &devices {
        let owner = ownership::owner(&members, &format!("discovery/{addr}")).expect("owner");
        let owner_addr = if owner == "a" { a.addr() } else { b.addr() };
        assert_eq!(
            target.read_by(since),
            BTreeSet::from([owner_addr]),
            "{addr} is asked by its owner {owner} only"
        );
        askers.insert(owner);
    }
    assert_eq!(lookup_all().len(), devices.len(), "one registration each");
    eprintln!("discovery: {} devices, asked by {askers:?}", devices.len());
}

#[test]
fn a_new_leader_whose_history_was_compacted_restates_every_device_in_its_snapshot() {
    let Some(cluster) = cluster() else { return };
    let LinkedPair {
        sim,
        mut leader,
        follower,
        ..
    } = LinkedPair::start(&cluster, "");
    let device = Peer::new(follower.addr());
    register(&device, "ep=before", "</t>");
    sim.wait_type("device_registered", Some("before"), WAIT)
        .expect("before");
    wait_for_stored_ack(&cluster);
    leader.kill9();
    register(&device, "ep=in-gap", "</t>");
    // Before the follower is elected (its lease must lapse first), etcd forgets the history
    // after the acknowledgement.
    cluster.compact_now();
    assert!(
        !follower
            .log_text()
            .contains("the cluster feed has caught up"),
        "the follower was elected before the compaction: the test cannot show its case"
    );
    let snapshot = sim
        .wait_for(WAIT, |f| {
            f["type"] == "snapshot"
                && f["devices"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x["ep"] == "in-gap"))
        })
        .expect("the new leader's snapshot restates the device registered in the gap");
    assert_eq!(snapshot["last"], true);
    until("the new leader to say what it gave up", || {
        follower.log_text().contains("etcd compacted its history")
    });
    register(&device, "ep=after", "</t>");
    sim.wait_type("device_registered", Some("after"), WAIT)
        .expect("events flow again");
}
