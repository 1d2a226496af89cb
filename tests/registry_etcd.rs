//! The Registry on etcd (issue 22, `docs/ha-etcd.md` §4 and §5), two replicas in one process on
//! a three-member etcd cluster this test starts on loopback: a write at one replica is in the
//! other's index (fed by the watch) with the same events; two replicas creating the same name
//! at once give one registration; ids are unique across replicas; a removal and an expiry
//! are decided once, and each event exists once per replica; a registry restarted on the
//! same prefix loads what was acknowledged; a replica cut off from etcd while the history it
//! missed is compacted reads the registry again and announces what changed. Through the CoAP RD: `tests/ha_rd.rs`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::registry::etcd::EtcdSettings;
use coap_gateway::registry::etcd::Ownership;
use coap_gateway::registry::{
    self, EndpointName, Register, RegistrationId, RegistryConfig, RegistryEvent, RegistryReader,
    Remove, SetStatus, Status, Subscribe,
};
use common::etcd::EtcdCluster;
use link_format::Link;
use tokio::sync::mpsc;

/// A defect bound for anything to happen on a loaded 2-core box, not a measurement.
const WAIT: Duration = Duration::from_secs(20);

fn cluster() -> Option<EtcdCluster> {
    if !common::require_tool("etcd") || !common::require_tool("etcdctl") {
        return None;
    }
    Some(EtcdCluster::start(3))
}

struct Replica {
    addr: Addr<registry::Registry>,
    reader: RegistryReader,
    ownership: Ownership,
    events: mpsc::UnboundedReceiver<RegistryEvent>,
    _dir: tempfile::TempDir,
}

async fn replica(cluster: &EtcdCluster, member: &str, grace_s: u32) -> Replica {
    replica_at(cluster.endpoints(), member, grace_s).await
}

async fn replica_at(endpoints: Vec<String>, member: &str, grace_s: u32) -> Replica {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = RegistryConfig {
        expiry_grace_s: grace_s,
        ..RegistryConfig::in_dir(dir.path())
    };
    let settings = EtcdSettings::new(endpoints, "/test/site", member);
    let (addr, reader, ownership) = registry::start_on_etcd(config, &settings)
        .await
        .expect("a registry on etcd");
    let (tx, events) = mpsc::unbounded_channel();
    addr.do_send(Subscribe(common::events::Collector(tx).start().recipient()));
    Replica {
        addr,
        reader,
        ownership,
        events,
        _dir: dir,
    }
}

fn register(ep: &str, source: &str, lifetime_s: u32) -> Register {
    Register {
        ep: EndpointName::new(ep).expect("ep"),
        d: None,
        base: None,
        lifetime_s,
        attrs: Vec::new(),
        links: vec![Link::new("/sensors/temp")],
        source: source.parse::<SocketAddr>().expect("addr"),
        identity: None,
    }
}

/// Register `ep` (from 10.0.0.1, 600 s) at `replica`; its id once acknowledged.
async fn registered_at(replica: &Replica, ep: &str) -> RegistrationId {
    replica
        .addr
        .send(register(ep, "10.0.0.1:5683", 600))
        .await
        .expect("mailbox")
        .expect("registered")
        .registration
        .id
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next event within the bound.
async fn next_event(replica: &mut Replica) -> RegistryEvent {
    tokio::time::timeout(WAIT, replica.events.recv())
        .await
        .expect("an event in time")
        .expect("the registry is running")
}

fn kind(event: &RegistryEvent) -> String {
    match event {
        RegistryEvent::Registered(r) => format!("registered {}", r.ep.as_str()),
        RegistryEvent::Updated(r) => format!("updated {}", r.ep.as_str()),
        RegistryEvent::StatusChanged(r) => format!("status {} {:?}", r.ep.as_str(), r.status),
        RegistryEvent::Removed {
            registration,
            reason,
        } => format!("removed {} {reason:?}", registration.ep.as_str()),
    }
}

#[actix_rt::test]
async fn a_write_at_one_replica_reaches_the_others_index_and_events() {
    let Some(cluster) = cluster() else { return };
    let mut a = replica(&cluster, "a", 60).await;
    let mut b = replica(&cluster, "b", 60).await;

    let registered = a
        .addr
        .send(register("node-1", "10.0.0.1:5683", 60))
        .await
        .expect("mailbox")
        .expect("registered");
    assert!(registered.created);
    let id = registered.registration.id;
    // Read-your-writes at A: the reply waited for A's index.
    assert!(a.reader.get(id).is_some(), "A's index has its own write");
    until("B's index to show the registration", || {
        b.reader.get(id).is_some()
    })
    .await;
    assert_eq!(kind(&next_event(&mut a).await), "registered node-1");
    assert_eq!(kind(&next_event(&mut b).await), "registered node-1");

    // A status change at B, seen at A.
    let changed = b
        .addr
        .send(SetStatus {
            id,
            status: Status::Disconnected,
        })
        .await
        .expect("mailbox")
        .expect("status");
    assert!(changed);
    until("A to see status 0", || {
        a.reader.get(id).map(|r| r.status) == Some(Status::Disconnected)
    })
    .await;
    assert_eq!(
        kind(&next_event(&mut a).await),
        "status node-1 Disconnected"
    );
    assert_eq!(
        kind(&next_event(&mut b).await),
        "status node-1 Disconnected"
    );

    // A re-registration at B keeps the id A gave (RFC 9176 §5) and brings status 1 back.
    let again = b
        .addr
        .send(register("node-1", "10.0.0.1:5683", 60))
        .await
        .expect("mailbox")
        .expect("re-registered");
    assert_eq!(again.registration.id, id);
    assert!(!again.created);
    for replica in [&mut a, &mut b] {
        assert_eq!(kind(&next_event(replica).await), "updated node-1");
        assert_eq!(kind(&next_event(replica).await), "status node-1 Connected");
    }

    // Removal at A: gone at B, one Removed event at each.
    a.addr
        .send(Remove::by_gateway(id))
        .await
        .expect("mailbox")
        .expect("removed");
    until("B to forget it", || b.reader.get(id).is_none()).await;
    assert_eq!(kind(&next_event(&mut a).await), "removed node-1 Deleted");
    assert_eq!(kind(&next_event(&mut b).await), "removed node-1 Deleted");
    // And etcd holds neither the record nor the name (read with etcdctl, not our client).
    let left = cluster.keys("/test/site/");
    assert!(
        !left
            .iter()
            .any(|k| k.contains("/reg/") || k.contains("/name/")),
        "etcd still holds {left:?}"
    );
}

#[actix_rt::test]
async fn the_same_new_name_at_two_replicas_at_once_gives_one_registration() {
    let Some(cluster) = cluster() else { return };
    let a = replica(&cluster, "a", 60).await;
    let b = replica(&cluster, "b", 60).await;
    for round in 0..20 {
        let ep = format!("race-{round}");
        let (at_a, at_b) = tokio::join!(
            a.addr.send(register(&ep, "10.0.0.1:5683", 60)),
            b.addr.send(register(&ep, "10.0.0.1:5683", 60)),
        );
        let at_a = at_a.expect("mailbox").expect("A's answer");
        let at_b = at_b.expect("mailbox").expect("B's answer");
        assert_eq!(
            at_a.registration.id, at_b.registration.id,
            "round {round}: one registration, one location"
        );
        assert!(
            at_a.created != at_b.created,
            "round {round}: exactly one created it (A {}, B {})",
            at_a.created,
            at_b.created
        );
    }
    let names = cluster.keys("/test/site/name/");
    let records = cluster.keys("/test/site/reg/");
    assert_eq!(names.len(), 20, "{names:?}");
    assert_eq!(records.len(), 20, "{records:?}");
}

#[actix_rt::test]
async fn ids_are_unique_across_replicas_and_survive_a_restart() {
    let Some(cluster) = cluster() else { return };
    let a = replica(&cluster, "a", 60).await;
    let b = replica(&cluster, "b", 60).await;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..50 {
        let at = if i % 2 == 0 { &a } else { &b };
        let reg = at
            .addr
            .send(register(&format!("n{i}"), "10.0.0.1:5683", 600))
            .await
            .expect("mailbox")
            .expect("registered");
        assert!(ids.insert(reg.registration.id), "id given twice");
    }
    until("both indexes to hold all 50", || {
        a.reader.len() == 50 && b.reader.len() == 50
    })
    .await;
    // A third replica started now loads what was acknowledged.
    let c = replica(&cluster, "c", 60).await;
    assert_eq!(c.reader.len(), 50);
    for id in &ids {
        assert!(c.reader.get(*id).is_some());
    }
    // and hands out ids nobody used.
    let reg = c
        .addr
        .send(register("late", "10.0.0.1:5683", 600))
        .await
        .expect("mailbox")
        .expect("registered");
    assert!(!ids.contains(&reg.registration.id));
}

#[actix_rt::test]
async fn an_expiry_is_decided_once_and_announced_once_per_replica() {
    let Some(cluster) = cluster() else { return };
    let mut a = replica(&cluster, "a", 2).await;
    let mut b = replica(&cluster, "b", 2).await;
    let reg = a
        .addr
        .send(register("short", "10.0.0.1:5683", 1))
        .await
        .expect("mailbox")
        .expect("registered");
    let id = reg.registration.id;
    for replica in [&mut a, &mut b] {
        assert_eq!(kind(&next_event(replica).await), "registered short");
    }
    // Both replicas' timers fire; one transaction wins, one Removed{Expired} per replica.
    for replica in [&mut a, &mut b] {
        assert_eq!(kind(&next_event(replica).await), "removed short Expired");
    }
    // Then the grace (2 s) ends and the record is purged from etcd, without another event.
    until("the purge", || cluster.keys("/test/site/reg/").is_empty()).await;
    until("both indexes to forget it", || {
        a.reader
            .with_index(|i| i.get_including_expired(id).is_none())
            && b.reader
                .with_index(|i| i.get_including_expired(id).is_none())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for replica in [&mut a, &mut b] {
        if let Ok(event) = replica.events.try_recv() {
            panic!("unexpected event {}", kind(&event));
        }
    }
}

#[actix_rt::test]
async fn rd_dump_reads_an_etcd_registry_while_the_replicas_run() {
    let Some(cluster) = cluster() else { return };
    let a = replica(&cluster, "a", 60).await;
    let mut ids = Vec::new();
    for ep in ["dump-1", "dump-2", "dump-3"] {
        let reg = a
            .addr
            .send(register(ep, "10.0.0.7:5683", 600))
            .await
            .expect("mailbox")
            .expect("registered");
        ids.push(reg.registration.id.0);
    }
    let endpoints = cluster.endpoints().join(",");
    let dump = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rd-dump"))
            .args(args)
            .output()
            .expect("rd-dump runs")
    };
    let json = dump(&[
        "--etcd",
        &endpoints,
        "--etcd-prefix",
        "/test/site",
        "--json",
    ]);
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let eps: Vec<&str> = lines.iter().filter_map(|d| d["ep"].as_str()).collect();
    assert_eq!(eps, ["dump-1", "dump-2", "dump-3"], "in id order");
    let table = dump(&["--etcd", &endpoints, "--etcd-prefix", "/test/site"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("dump-2") && text.contains("10.0.0.7"),
        "{text}"
    );
    // Another prefix holds nothing; an unreachable etcd is exit 1 with a message.
    let other = dump(&[
        "--etcd",
        &endpoints,
        "--etcd-prefix",
        "/test/other",
        "--json",
    ]);
    assert!(other.status.success());
    assert!(other.stdout.is_empty());
    let down = dump(&["--etcd", "http://127.0.0.1:1", "--json"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("127.0.0.1:1"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    // rd-dump wrote nothing: the keys are the cluster record, the id counter, A's member key
    // (once A joined) and 3 × 2.
    let keys: Vec<String> = cluster
        .keys("/test/")
        .into_iter()
        .filter(|k| !k.contains("/members/"))
        .collect();
    assert_eq!(keys.len(), 2 + 6, "{keys:?}");
    assert_eq!(ids.len(), 3);
}

#[actix_rt::test]
async fn every_registration_has_exactly_one_owner_among_the_members() {
    let Some(cluster) = cluster() else { return };
    let a = replica(&cluster, "a", 60).await;
    let b = replica(&cluster, "b", 60).await;
    until("both to see both members", || {
        a.ownership.members() == ["a", "b"] && b.ownership.members() == ["a", "b"]
    })
    .await;
    until("both to be on duty", || {
        a.ownership.on_duty() && b.ownership.on_duty()
    })
    .await;
    let mut owned_by_a = 0;
    for n in 1..=1000 {
        let id = RegistrationId(n);
        assert!(
            a.ownership.owns(id) != b.ownership.owns(id),
            "registration {n}: owned by exactly one"
        );
        owned_by_a += usize::from(a.ownership.owns(id));
    }
    // Rendezvous hashing spreads them (a binomial 1000 × 1/2 is inside 400..600 but for
    // 1 case in 10^10).
    assert!(
        (400..600).contains(&owned_by_a),
        "A owns {owned_by_a} of 1000"
    );
    // The member keys are in etcd, each on a lease (etcdctl shows the lease in JSON).
    let members = cluster.keys("/test/site/members/");
    assert_eq!(members, ["/test/site/members/a", "/test/site/members/b"]);
    let json = cluster.etcdctl(&["get", "/test/site/members/a", "-w", "json"]);
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(
        text.contains("\"lease\""),
        "the member key is leased: {text}"
    );
}

#[actix_rt::test]
async fn a_burst_beyond_one_transaction_is_split_and_every_change_commits() {
    let Some(cluster) = cluster() else { return };
    let a = replica(&cluster, "a", 60).await;
    // 300 new names and, in the same burst, a second registration of 100 of them: more than
    // the 100 changes one transaction may hold, and the same keys twice, which etcd refuses
    // within one transaction (the second waits for the next batch, then is decided again).
    let mut pending = Vec::new();
    for i in 0..300 {
        pending.push(
            a.addr
                .send(register(&format!("burst-{i}"), "10.0.0.9:5683", 60)),
        );
    }
    for i in 0..100 {
        pending.push(
            a.addr
                .send(register(&format!("burst-{i}"), "10.0.0.9:5683", 120)),
        );
    }
    let answers = futures::future::join_all(pending).await;
    let mut ids = std::collections::HashMap::new();
    for (n, answer) in answers.into_iter().enumerate() {
        let reg = answer
            .expect("mailbox")
            .unwrap_or_else(|e| panic!("change {n} failed: {e}"))
            .registration;
        let first = *ids.entry(reg.ep.as_str().to_owned()).or_insert(reg.id);
        assert_eq!(first, reg.id, "{}: one registration", reg.ep.as_str());
    }
    assert_eq!(ids.len(), 300);
    assert_eq!(cluster.keys("/test/site/reg/").len(), 300);
    assert_eq!(cluster.keys("/test/site/name/").len(), 300);
}

#[actix_rt::test]
async fn a_replica_whose_watch_cannot_resume_after_a_compaction_reads_the_registry_again() {
    let Some(cluster) = cluster() else { return };
    let a = replica(&cluster, "a", 60).await;
    // B reaches etcd through a relay the test cuts: its network fails, A's does not.
    let target = cluster.endpoints()[0].parse().expect("endpoint");
    let relay = common::tcp_cut::TcpCut::start(target);
    let mut b = replica_at(vec![relay.addr().to_string()], "b", 60).await;
    let mut ids = std::collections::HashMap::new();
    for ep in ["stays", "goes", "changes"] {
        ids.insert(ep, registered_at(&a, ep).await);
    }
    for _ in 0..3 {
        next_event(&mut b).await;
    }

    relay.cut();
    // While B cannot see etcd: a removal, a status change and a new registration at A.
    a.addr
        .send(Remove::by_gateway(ids["goes"]))
        .await
        .expect("mailbox")
        .expect("removed");
    a.addr
        .send(SetStatus {
            id: ids["changes"],
            status: Status::Disconnected,
        })
        .await
        .expect("mailbox")
        .expect("status");
    let new = registered_at(&a, "new").await;
    // etcd forgets the history B missed.
    cluster.compact_now();
    assert!(b.reader.get(new).is_none(), "B saw nothing while cut off");
    relay.heal();

    until("B's index to match etcd again", || {
        b.reader.get(ids["goes"]).is_none()
            && b.reader.get(new).is_some()
            && b.reader.get(ids["changes"]).map(|r| r.status) == Some(Status::Disconnected)
    })
    .await;
    assert!(b.reader.get(ids["stays"]).is_some());
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(kind(&next_event(&mut b).await));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "registered new",
            "removed goes Deleted",
            "status changes Disconnected",
        ],
        "B announces each difference once"
    );
    // And B is watching again: a later write reaches it.
    let later = registered_at(&a, "later").await;
    until("B to see a write after the re-read", || {
        b.reader.get(later).is_some()
    })
    .await;
    assert_eq!(kind(&next_event(&mut b).await), "registered later");
}
