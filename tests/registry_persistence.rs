//! Durability of the Registry on a real sled directory: a clean restart of the actor system
//! brings every registration back (ids, links, status), expiry timers are re-armed from the
//! stored deadlines, and a registration acknowledged before a SIGKILL survives it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::registry::{
    self, EndpointName, Register, Registration, RegistryConfig, RegistryEvent, RemovalReason,
    SetStatus, Status, Store, Subscribe,
};
use link_format::{Link, Param};
use tokio::sync::mpsc;

const CHILD_DIR_ENV: &str = "REGISTRY_SIGKILL_CHILD_DIR";

fn config(dir: &Path) -> RegistryConfig {
    RegistryConfig {
        expiry_grace_s: 60,
        ..RegistryConfig::in_dir(dir.to_path_buf())
    }
}

/// `registry::start`, retried while the lock is still held: another test in this binary may
/// be spawning a process at the moment we reopen, and the child holds a copy of every open
/// descriptor (with sled's lock) until it execs. A real restart is a new process.
fn start_retrying(config: RegistryConfig) -> (Addr<registry::Registry>, registry::RegistryReader) {
    let started = Instant::now();
    loop {
        match registry::start(config.clone()) {
            Err(registry::StoreError::Locked { .. })
                if started.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

fn three_links(i: usize) -> Vec<Link> {
    vec![
        Link::new("/sensors/temp")
            .with("rt", Some("temperature"))
            .with("if", Some("core.s"))
            .with("obs", None),
        Link::new("/sensors/light")
            .with("rt", Some("light-lux"))
            .with("ct", Some("0 60")),
        Link::new(format!("/fw/{i}")).with("title", Some("firmware, v1")),
    ]
}

fn register(i: usize, lt: u32) -> Register {
    Register {
        identity: None,
        ep: EndpointName::new(format!("node-{i}")).unwrap(),
        d: None,
        base: None,
        lifetime_s: lt,
        attrs: vec![Param::new("et", Some("oic.d.sensor"))],
        links: three_links(i),
        source: SocketAddr::from(([127, 0, 0, 1], 20000 + (i % 40000) as u16)),
    }
}

/// Run `f` in a fresh actix system and shut the system down afterwards, as a gateway restart
/// would.
fn in_system<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let sys = System::new();
    let out = sys.block_on(f());
    System::current().stop();
    let _ = sys.run();
    out
}

#[test]
fn a_thousand_registrations_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let before: BTreeMap<String, Registration> = in_system(|| async {
        let (addr, reader) = start_retrying(config(dir.path()));
        for chunk in (0..1000).collect::<Vec<_>>().chunks(64) {
            let sends = chunk.iter().map(|&i| addr.send(register(i, 3600)));
            for reply in futures::future::join_all(sends).await {
                reply.unwrap().unwrap();
            }
        }
        // Every tenth device is marked disconnected, which must survive too.
        for i in (0..1000).step_by(10) {
            let id = reader
                .find(&EndpointName::new(format!("node-{i}")).unwrap(), None)
                .unwrap()
                .id;
            assert!(addr
                .send(SetStatus {
                    id,
                    status: Status::Disconnected
                })
                .await
                .unwrap()
                .unwrap());
        }
        assert_eq!(reader.len(), 1000);
        reader.with_index(|i| {
            i.live(0)
                .map(|r| (r.ep.to_string(), (**r).clone()))
                .collect()
        })
    });

    let after: BTreeMap<String, Registration> = in_system(|| async {
        let (_addr, reader) = start_retrying(config(dir.path()));
        assert_eq!(reader.len(), 1000);
        let rt_hits = reader.with_index(|i| i.ids_with_link_attr("rt", "temperature", false));
        assert_eq!(
            rt_hits.unwrap().len(),
            1000,
            "the inverted index is rebuilt at load"
        );
        reader.with_index(|i| {
            i.live(0)
                .map(|r| (r.ep.to_string(), (**r).clone()))
                .collect()
        })
    });
    assert_eq!(after.len(), 1000);
    assert_eq!(after, before, "ids, links, status and times all survive");
    let disconnected = after
        .values()
        .filter(|r| r.status == Status::Disconnected)
        .count();
    assert_eq!(disconnected, 100);
    assert_eq!(after["node-7"].links, three_links(7).into());
}

#[test]
fn expiry_timers_are_rearmed_from_stored_deadlines_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let soon_id = in_system(|| async {
        let (addr, _reader) = start_retrying(config(dir.path()));
        addr.send(register(2, 3600)).await.unwrap().unwrap();
        addr.send(register(1, 2))
            .await
            .unwrap()
            .unwrap()
            .registration
            .id
    });
    in_system(|| async {
        let (addr, reader) = start_retrying(config(dir.path()));
        assert_eq!(reader.len(), 2, "restarted before the short lifetime ended");
        let (tx, mut events) = mpsc::unbounded_channel();
        addr.do_send(Subscribe(common::events::Collector(tx).start().recipient()));
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the stored deadline fires after the restart")
            .unwrap();
        match event {
            RegistryEvent::Removed {
                registration,
                reason,
            } => {
                assert_eq!(registration.id, soon_id);
                assert_eq!(reason, RemovalReason::Expired);
            }
            other => panic!("expected an expiry, got {other:?}"),
        }
        assert_eq!(reader.len(), 1);
    });
}

/// The child half of the SIGKILL test: register endpoints through the actor and print each
/// acknowledged one, then wait to be killed (bounded, in case the parent is gone).
fn sigkill_child(dir: &Path) {
    in_system(|| async {
        let (addr, _reader) = start_retrying(config(dir));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut next = 0usize;
        while next < 20_000 && Instant::now() < deadline {
            let sends: Vec<_> = (next..next + 16)
                .map(|i| addr.send(register(i, 3600)))
                .collect();
            next += 16;
            for reply in futures::future::join_all(sends).await {
                let reg = reply.unwrap().unwrap().registration;
                println!("ACK {} {}", reg.id, reg.ep);
            }
        }
        tokio::time::sleep(Duration::from_secs(20)).await;
    });
}

#[test]
fn acknowledged_registrations_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        sigkill_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_registrations_survive_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: HashMap<u64, String> = HashMap::new();
    let started = Instant::now();
    while acked.len() < 500 && started.elapsed() < Duration::from_secs(30) {
        let Some(line) = lines.next() else { break };
        if let Some(ack) = line.unwrap().strip_prefix("ACK ") {
            let (id, ep) = ack.split_once(' ').unwrap();
            acked.insert(id.parse().unwrap(), ep.to_string());
        }
    }
    // Kill mid-stream: the child is still registering.
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Acknowledgements already in the pipe were made before the kill, so they count too.
    for line in lines {
        if let Some(ack) = line.unwrap().strip_prefix("ACK ") {
            let (id, ep) = ack.split_once(' ').unwrap();
            acked.insert(id.parse().unwrap(), ep.to_string());
        }
    }
    assert!(
        acked.len() >= 500,
        "the child acknowledged only {}",
        acked.len()
    );

    let started = Instant::now();
    let store = loop {
        match Store::open(dir.path(), 8) {
            Err(registry::StoreError::Locked { .. })
                if started.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    let loaded = store.load_all().unwrap();
    assert_eq!(loaded.skipped, 0);
    let stored: HashMap<u64, Registration> = loaded
        .registrations
        .into_iter()
        .map(|r| (r.id.0, r))
        .collect();
    for (id, ep) in &acked {
        let reg = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged registration {id} ({ep}) lost by SIGKILL"));
        assert_eq!(&reg.ep.to_string(), ep);
        assert_eq!(reg.links.len(), 3);
    }
    eprintln!(
        "sigkill: {} acknowledged, {} on disk after the kill",
        acked.len(),
        stored.len()
    );
}
