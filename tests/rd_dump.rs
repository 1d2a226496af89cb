//! The real `rd-dump` binary against registries written by the real Registry actor: the table,
//! the JSON lines, and its answers for a locked, a missing and an empty data directory.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::device_object::DeviceObject;
use coap_gateway::registry::{
    self, EndpointName, Register, Registration, RegistryConfig, Sector, SetStatus, Status, Store,
    StoreError,
};
use coap_gateway::time::rfc3339_ms;
use link_format::{Link, Param};

/// Tests here run one at a time: a child spawned by one test holds a copy of every open
/// descriptor in this process (sled's lock included) until it execs, which would make another
/// test's database look locked.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wait until the stopped registry has let go of the database (sled's I/O threads release
/// their handles a moment after the actor system is gone).
fn wait_unlocked(dir: &Path) {
    let started = Instant::now();
    loop {
        match Store::open(dir, 8) {
            Err(StoreError::Locked { .. }) if started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => {
                drop(other.unwrap());
                return;
            }
        }
    }
}

fn rd_dump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rd-dump"))
        .args(args)
        .output()
        .unwrap()
}

/// Writes three known registrations (one disconnected and made over DTLS by an identity whose
/// name holds a space, one in a sector, one with an explicit base) and returns them as the
/// actor acknowledged them, in id order.
fn populate(dir: &Path) -> Vec<Registration> {
    let sys = System::new();
    let regs = sys.block_on(async {
        let (addr, _reader) = registry::start(RegistryConfig {
            expiry_grace_s: 60,
            ..RegistryConfig::in_dir(dir.to_path_buf())
        })
        .unwrap();
        let mut regs = Vec::new();
        let requests = [
            (
                "node-a",
                None,
                None,
                vec![Link::new("/t").with("rt", Some("temperature"))],
                None,
            ),
            (
                "node-bravo",
                Some("roof"),
                Some("coap://[2001:db8::7]"),
                vec![
                    Link::new("/l")
                        .with("rt", Some("light"))
                        .with("ct", Some("0")),
                    Link::new("/fw").with("obs", None),
                ],
                None,
            ),
            ("c", None, None, vec![], Some("dev c")),
        ];
        for (ep, d, base, links, identity) in requests {
            let reply = addr
                .send(Register {
                    identity: identity.map(Into::into),
                    ep: EndpointName::new(ep).unwrap(),
                    d: d.map(|d| Sector::new(d).unwrap()),
                    base: base.map(str::to_string),
                    lifetime_s: 300,
                    attrs: vec![Param::new("et", Some("oic.d.sensor"))],
                    links,
                    source: SocketAddr::from(([127, 0, 0, 1], 5683)),
                })
                .await
                .unwrap()
                .unwrap();
            regs.push(reply.registration);
        }
        assert!(addr
            .send(SetStatus {
                id: regs[2].id,
                status: Status::Disconnected,
            })
            .await
            .unwrap()
            .unwrap());
        let mut last = (*regs[2]).clone();
        last.status = Status::Disconnected;
        vec![(*regs[0]).clone(), (*regs[1]).clone(), last]
    });
    System::current().stop();
    let _ = sys.run();
    wait_unlocked(dir);
    regs
}

#[test]
fn prints_an_aligned_table_of_every_registration() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let regs = populate(dir.path());
    let out = rd_dump(&["--data-dir", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + regs.len() + 1, "{text}");
    let header = lines[0];
    for name in [
        "LOCATION", "EP", "D", "BASE", "STATUS", "LT", "EXPIRES", "IDENTITY", "LINKS",
    ] {
        assert!(header.contains(name), "{header}");
    }
    assert_eq!(lines[4], "3 registrations");

    for (line, reg) in lines[1..4].iter().zip(&regs) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], reg.id.location(), "{line}");
        assert_eq!(cells[1], reg.ep.as_str(), "{line}");
        assert_eq!(
            cells[2],
            reg.d.as_ref().map_or("-", |d| d.as_str()),
            "{line}"
        );
        assert_eq!(cells[3], reg.base, "{line}");
        assert_eq!(cells[4], reg.status.as_u8().to_string(), "{line}");
        assert_eq!(cells[5], "300", "{line}");
        assert_eq!(cells[6], rfc3339_ms(reg.expires_at_ms), "{line}");
        // The DTLS identity's name, one cell even with a space in it; `-` over plain CoAP.
        let identity = reg.identity.as_deref().map_or("-", |i| match i {
            "dev c" => "dev\\u{20}c",
            other => other,
        });
        assert_eq!(cells[7], identity, "{line}");
        let links = link_format::serialize(&reg.links);
        assert!(
            line.trim_end().ends_with(links.as_str()),
            "{line} should end with {links}"
        );
        // Aligned: every column starts where its header does.
        for name in ["EP", "BASE", "STATUS", "EXPIRES", "IDENTITY"] {
            let col = header.find(&format!("  {name}")).unwrap() + 2;
            let index = [
                "LOCATION", "EP", "D", "BASE", "STATUS", "LT", "EXPIRES", "IDENTITY",
            ]
            .iter()
            .position(|h| *h == name)
            .unwrap();
            assert_eq!(
                &line[col..col + cells[index].len()],
                cells[index],
                "{name} in {line}"
            );
        }
    }
    assert_eq!(regs[1].base, "coap://[2001:db8::7]");
    assert_eq!(regs[0].base, "coap://127.0.0.1");
    assert_eq!(regs[2].base, "coaps://127.0.0.1:5683", "derived over DTLS");
    assert!(
        lines[3].split_whitespace().nth(4) == Some("0"),
        "c is disconnected"
    );
}

#[test]
fn json_mode_prints_one_device_object_per_line() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let regs = populate(dir.path());
    let out = rd_dump(&["--data-dir", dir.path().to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The one device object of the admin API and the platform frames, not the storage record.
    let want: Vec<serde_json::Value> = regs
        .iter()
        .map(|r| serde_json::to_value(DeviceObject(r)).unwrap())
        .collect();
    assert_eq!(parsed, want);
    let raw = &parsed[1];
    assert_eq!(raw["ep"], "node-bravo");
    assert_eq!(raw["d"], "roof");
    assert_eq!(raw["status"], 1);
    assert_eq!(raw["lt"], 300);
    assert_eq!(raw["et"], "oic.d.sensor");
    assert_eq!(raw["location"], regs[1].id.location());
    assert_eq!(raw["expires_at"], rfc3339_ms(regs[1].expires_at_ms));
    assert_eq!(
        raw["links"][1],
        serde_json::json!({"href": "/fw", "rt": null, "if": null, "ct": null, "obs": true,
                           "attrs": {}})
    );
    // The identity's name and whether the base is coaps; nothing of either for a plain one.
    assert_eq!(parsed[2]["dtls_identity"], "dev c");
    assert_eq!(parsed[2]["coaps"], true);
    for plain in &parsed[..2] {
        assert_eq!(plain["dtls_identity"], serde_json::Value::Null, "{plain}");
        assert_eq!(plain["coaps"], false, "{plain}");
    }
    for storage_only in [
        "id",
        "lifetime_s",
        "base_origin",
        "registered_at_ms",
        "identity",
    ] {
        assert!(raw.get(storage_only).is_none(), "{storage_only} in {raw}");
    }
}

#[test]
fn a_locked_database_gives_one_clear_line_and_exit_1() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let _held = Store::open(dir.path(), 8).unwrap();
    let out = rd_dump(&["--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("locked"), "{err}");
    assert!(err.contains("gateway holds the lock"), "{err}");
    assert!(err.contains(dir.path().to_str().unwrap()), "{err}");
}

#[test]
fn a_missing_or_empty_directory_gives_exit_2_and_creates_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let out = rd_dump(&["--data-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no registry database"), "{err}");
    assert!(err.contains("no-such-data"), "{err}");
    assert!(!missing.exists(), "rd-dump must not create a database");

    let out = rd_dump(&["--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn an_empty_registry_prints_the_header_only() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), 8).unwrap());
    let out = rd_dump(&["--data-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert_eq!(text.lines().last(), Some("0 registrations"));
}
