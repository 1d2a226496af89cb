//! Active discovery against the real binaries over loopback (issue 9 "What it must show"):
//! 20 `device-sim` devices that do not register themselves are found through a port-range
//! target, registered under distinct generated names with `src=discovery` and an explicit base,
//! visible in lookups and reported to the platform; a device that registered itself is never
//! overwritten; a discovered device that stops answering expires after its lifetime.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::device_sim::DeviceSim;
use common::platform_sim::PlatformSim;
use common::{Gateway, GatewayOptions};

const WAIT: Duration = Duration::from_secs(20);

/// `count` devices on ports `first..first+count`, once they are up; `None` when device-sim
/// exited first (most likely a port of the range was taken meanwhile).
fn start_sim(rd: SocketAddr, count: usize, first: u16, extra: &[&str]) -> Option<DeviceSim> {
    let first = first.to_string();
    let mut args = vec!["--first-port", first.as_str(), "--lt", "60"];
    args.extend_from_slice(extra);
    let mut sim = DeviceSim::spawn(rd, count, &args);
    sim.ready(WAIT).then_some(sim)
}

/// A first port such that `count` consecutive UDP ports on 127.0.0.1 were free just now.
fn free_port_range(count: u16) -> u16 {
    for _ in 0..100 {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let first = probe.local_addr().unwrap().port();
        drop(probe);
        if first > u16::MAX - count {
            continue;
        }
        let held: Vec<_> = (first..first + count)
            .map_while(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == count as usize {
            return first;
        }
    }
    panic!("no {count} consecutive free UDP ports on 127.0.0.1");
}

/// Start `count` devices on a free port range, retrying when the range got taken meanwhile.
fn start_sims(rd: SocketAddr, count: u16, extra: &[&str]) -> (DeviceSim, u16) {
    for _ in 0..5 {
        let first = free_port_range(count);
        if let Some(sim) = start_sim(rd, count.into(), first, extra) {
            return (sim, first);
        }
    }
    panic!("device-sim could not bind {count} consecutive ports");
}

fn discovery_yaml(target: &str, interval_s: u64, lifetime_s: u32) -> String {
    format!(
        "discovery:\n  enabled: true\n  interval_s: {interval_s}\n  lifetime_s: {lifetime_s}\n  \
         timeout_ms: 500\n  max_in_flight: 8\n  targets: [{target:?}]\n\
         pinger:\n  enabled: false\n"
    )
}

#[test]
fn twenty_passive_devices_are_discovered_registered_and_reported() {
    const COUNT: u16 = 20;
    let platform = PlatformSim::start("127.0.0.1:0", None);
    // The range is chosen before the gateway starts; the devices come up after its first
    // round at the latest, and the 1 s interval finds them.
    let first = free_port_range(COUNT);
    let target = format!("127.0.0.1:{first}-{}", first + COUNT - 1);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: format!(
            "{}platform:\n  url: {:?}\n  reconnect_max_s: 1\n",
            discovery_yaml(&target, 1, 30),
            platform.url()
        ),
        ..Default::default()
    });
    let _sim = start_sim(gw.addr(), COUNT.into(), first, &["--no-register"])
        .expect("device-sim binds the probed range");
    let peer = Peer::new(gw.addr());

    let links = lookup_until(&peer, "/rd-lookup/ep?src=discovery", WAIT, |l| {
        l.len() == COUNT as usize
    });
    assert_eq!(links.len(), COUNT as usize, "{links:?}\n{}", gw.log_text());
    let names: BTreeSet<&str> = links.iter().filter_map(|l| l.get("ep")).collect();
    let want: BTreeSet<String> = (first..first + COUNT)
        .map(|p| format!("disc-127-0-0-1-{p}"))
        .collect();
    assert_eq!(
        names,
        want.iter().map(String::as_str).collect(),
        "distinct generated names"
    );
    for link in &links {
        let ep = link.get("ep").unwrap();
        let port = ep.rsplit('-').next().unwrap();
        assert_eq!(link.get("base"), Some(&*format!("coap://127.0.0.1:{port}")));
        assert_eq!(link.get("src"), Some("discovery"));
    }
    // The device's own links were registered, resolved against its base.
    let res = lookup(&peer, &format!("/rd-lookup/res?ep=disc-127-0-0-1-{first}"));
    let targets: BTreeSet<&str> = res.iter().map(|l| l.target.as_str()).collect();
    assert!(
        targets.contains(&*format!("coap://127.0.0.1:{first}/sensors/temp")),
        "{targets:?}"
    );

    for name in &want {
        let frame = platform
            .wait_type("device_registered", Some(name), WAIT)
            .unwrap_or_else(|| panic!("no device_registered for {name}"));
        assert_eq!(
            frame["device"]["base"],
            format!("coap://127.0.0.1:{}", name.rsplit('-').next().unwrap())
        );
    }
    // Refreshing rounds keep one registration per device.
    assert!(
        gw.wait_for_log("discovery: round 3", WAIT),
        "{}",
        gw.log_text()
    );
    assert_eq!(
        lookup(&peer, "/rd-lookup/ep?src=discovery").len(),
        COUNT as usize
    );
}

#[test]
fn a_self_registered_device_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let gw = Gateway::start_with(GatewayOptions {
        data_dir: Some(data_dir.clone()),
        ..Default::default()
    });
    // The device registers itself first (as own-0 from its port), then discovery targets it.
    let (sim, port) = start_sims(gw.addr(), 1, &["--prefix", "own-"]);
    let addr = gw.addr();
    drop(gw);
    // Same database, now with discovery of that very address.
    let gw = Gateway::start_with(GatewayOptions {
        listen: vec![addr.to_string()],
        extra_yaml: discovery_yaml(&format!("127.0.0.1:{port}"), 1, 30),
        data_dir: Some(data_dir),
    });
    assert!(
        gw.wait_for_log("discovery: round 3", WAIT),
        "{}",
        gw.log_text()
    );
    let peer = Peer::new(gw.addr());
    assert!(lookup(&peer, "/rd-lookup/ep?src=discovery").is_empty());
    let own = lookup(&peer, "/rd-lookup/ep?ep=own-0");
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0].get("src"), None, "no discovery marker: {own:?}");
    assert_eq!(
        own[0].get("base"),
        Some(&*format!("coap://127.0.0.1:{port}"))
    );
    assert!(
        gw.log_text().contains("1 self-registered"),
        "{}",
        gw.log_text()
    );
    drop(sim);
}

#[test]
fn a_device_registering_itself_later_supersedes_its_discovered_registration() {
    let gw0 = Gateway::start_with(GatewayOptions::default());
    let (mut passive, port) = start_sims(gw0.addr(), 1, &["--no-register"]);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: discovery_yaml(&format!("127.0.0.1:{port}"), 1, 30),
        ..Default::default()
    });
    drop(gw0);
    let peer = Peer::new(gw.addr());
    let found = lookup_until(&peer, "/rd-lookup/ep?src=discovery", WAIT, |l| l.len() == 1);
    assert_eq!(found.len(), 1, "{}", gw.log_text());
    // The device now registers itself, from the same address, under its own name.
    passive.command("silent 0");
    drop(passive);
    let own = start_sim(gw.addr(), 1, port, &["--prefix", "own-"]).expect("port still free");
    let gone = lookup_until(&peer, "/rd-lookup/ep?src=discovery", WAIT, |l| l.is_empty());
    assert!(gone.is_empty(), "{gone:?}\n{}", gw.log_text());
    assert_eq!(lookup(&peer, "/rd-lookup/ep?ep=own-0").len(), 1);
    drop(own);
}

#[test]
fn a_discovered_device_that_disappears_expires_after_its_lifetime() {
    const LIFETIME_S: u32 = 3;
    let gw0 = Gateway::start_with(GatewayOptions::default());
    let (mut sim, first) = start_sims(gw0.addr(), 2, &["--no-register"]);
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: discovery_yaml(&format!("127.0.0.1:{first}-{}", first + 1), 1, LIFETIME_S),
        ..Default::default()
    });
    drop(gw0);
    let peer = Peer::new(gw.addr());
    let found = lookup_until(&peer, "/rd-lookup/ep?src=discovery", WAIT, |l| l.len() == 2);
    assert_eq!(found.len(), 2, "{}", gw.log_text());

    sim.command("silent 0");
    let silenced_at = Instant::now();
    let left = lookup_until(&peer, "/rd-lookup/ep?src=discovery", WAIT, |l| l.len() == 1);
    let took = silenced_at.elapsed();
    assert_eq!(left.len(), 1, "{left:?}\n{}", gw.log_text());
    assert_eq!(
        left[0].get("ep"),
        Some(&*format!("disc-127-0-0-1-{}", first + 1))
    );
    // Not before its last refresh's lifetime could have run out (a refresh may have landed
    // just before the device went silent, so at least lifetime - interval).
    assert!(
        took >= Duration::from_secs(u64::from(LIFETIME_S) - 1),
        "expired after {took:?}, lifetime {LIFETIME_S} s"
    );
    // The answering device is still refreshed: it outlives several lifetimes.
    std::thread::sleep(Duration::from_secs(u64::from(LIFETIME_S) + 1));
    assert_eq!(lookup(&peer, "/rd-lookup/ep?src=discovery").len(), 1);
}
