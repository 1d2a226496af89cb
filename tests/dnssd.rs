//! DNS-SD over mDNS (issue 13), end to end and only inside private network namespaces made by
//! the test (`common::netns`): the real gateway runs in namespace a; an independent `mdns-sd`
//! daemon in namespace b browses and advertises, and CoAP requests leave from sockets made in b.
//!
//! - The RD is resolved as `_core-rd._udp` from b (port, host, TXT keys, address), a device
//!   registers through the address found and is seen in a lookup, and SIGTERM withdraws the
//!   service at once (goodbye packets: without them the browser would keep it for its TTL).
//! - With `discovery.mdns`, a passive `device-sim` advertised as `_coap._udp` in b is asked and
//!   registered by the gateway as a third-party registration.
//! - Two replicas on etcd (etcd in namespace a too) each advertise an instance and host of
//!   their own, `test-gw (a)` on `test-gw-a.local.`, with the TXT key `cluster=test-gw`; a
//!   device registers through one and is found through the other.
//! - A gateway without `rd.dnssd`/`discovery.mdns` (every other test's) has no mDNS daemon.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::coap_peer::{lookup, register, run_bounded, Link, Peer};
use common::device_sim::{self, DeviceSim};
use common::etcd::EtcdCluster;
use common::netns::{netns_or_skip, NetnsPair, Side, A_V4, A_V6, B_V4, B_V6};
use common::{Gateway, GatewayOptions};
use mdns_sd::{ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};

const RD_TYPE: &str = "_core-rd._udp.local.";
const COAP_TYPE: &str = "_coap._udp.local.";
/// Probing (RFC 6762 §8.1, ~750 ms) plus announcing, with room for a loaded machine.
const RESOLVE_BUDGET: Duration = Duration::from_secs(20);
/// Goodbyes arrive within a second; without them the browser keeps the service for minutes.
const GOODBYE_BUDGET: Duration = Duration::from_secs(5);
/// mDNS daemon threads are named so by `mdns-sd`.
const DAEMON_THREAD: &str = "mDNS_daemon";

/// The network namespace inode of every `mDNS_daemon` thread of process `pid`.
fn daemon_thread_netns(pid: u32) -> Vec<u64> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == DAEMON_THREAD {
            if let Ok(ns) = std::fs::metadata(task.path().join("ns/net")) {
                found.push(ns.ino());
            }
        }
    }
    found
}

/// [`daemon_thread_netns`] once it lists something (a new thread names itself only once it
/// runs), or empty after a short wait.
fn wait_daemon_thread_netns(pid: u32) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = daemon_thread_netns(pid);
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn netns_inode(pair: &NetnsPair, side: Side) -> u64 {
    std::fs::metadata(format!("/run/netns/{}", pair.name(side)))
        .expect("namespace file")
        .ino()
}

/// An independent mDNS daemon created on a thread inside `side`: its own thread is spawned
/// from there, so it (and the sockets it opens) live in that namespace.
fn daemon_in(pair: &NetnsPair, side: Side) -> ServiceDaemon {
    let daemon = pair
        .run_in(side, || ServiceDaemon::new().expect("mdns-sd daemon"))
        .expect("enter namespace");
    let ns = netns_inode(pair, side);
    let host = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let threads = daemon_thread_netns(std::process::id());
        assert!(
            !threads.contains(&host),
            "an mDNS daemon thread of the test runs in the host namespace"
        );
        if threads.contains(&ns) {
            return daemon;
        }
        assert!(
            Instant::now() < deadline,
            "no mDNS daemon thread in the test's namespace: {threads:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A UDP socket created in namespace b.
fn socket_in_b(pair: &NetnsPair) -> UdpSocket {
    pair.run_in(Side::B, || UdpSocket::bind((B_V4, 0)).expect("bind in b"))
        .expect("enter namespace b")
}

fn wait_resolved(
    events: &mdns_sd::Receiver<ServiceEvent>,
    fullname: &str,
    seen: &mut Vec<String>,
) -> Option<ResolvedService> {
    let deadline = Instant::now() + RESOLVE_BUDGET;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service)) if service.fullname == fullname => {
                return Some(*service)
            }
            Ok(other) => seen.push(format!("{other:?}")),
            Err(_) => break,
        }
    }
    None
}

fn wait_removed(events: &mdns_sd::Receiver<ServiceEvent>, fullname: &str) -> Option<Duration> {
    let start = Instant::now();
    let deadline = start + GOODBYE_BUDGET;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceRemoved(_, name)) if name == fullname => {
                return Some(start.elapsed())
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    None
}

#[test]
fn replicas_on_etcd_each_advertise_an_instance_of_their_own_with_the_cluster_key() {
    let Some(pair) = netns_or_skip("dnssd-ha") else {
        return;
    };
    if !common::require_tool("etcd") || !common::require_tool("etcdctl") {
        return;
    }
    // etcd in namespace a too: the replicas reach it on that namespace's loopback.
    let cluster = EtcdCluster::start_in_netns(1, &pair.a);
    let replica = |member: &str| {
        Gateway::start_in_netns_rd(
            &pair.a,
            GatewayOptions {
                listen: vec!["0.0.0.0:0".into()],
                extra_yaml: format!(
                    "pinger:\n  enabled: false\n{}",
                    cluster.registry_yaml("/dnssd", member, 3, "")
                ),
                ..Default::default()
            },
            "  dnssd: true\n  dnssd_interfaces: [veth0]\n",
        )
    };
    let (a, b) = (replica("a"), replica("b"));
    let browser = daemon_in(&pair, Side::B);
    let events = browser.browse(RD_TYPE).expect("browse");
    // Both instances, in whatever order they resolve.
    let names = [("a", &a), ("b", &b)].map(|(m, gw)| (format!("test-gw ({m}).{RD_TYPE}"), m, gw));
    let mut resolved: std::collections::HashMap<String, ResolvedService> = Default::default();
    let mut seen = Vec::new();
    let deadline = Instant::now() + RESOLVE_BUDGET;
    while resolved.len() < names.len() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            panic!(
                "resolved only {:?} from namespace b; events: {seen:?}\n{}\n{}",
                resolved.keys().collect::<Vec<_>>(),
                a.log_text(),
                b.log_text()
            );
        };
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                resolved.insert(service.fullname.clone(), *service);
            }
            Ok(other) => seen.push(format!("{other:?}")),
            Err(_) => {}
        }
    }
    let mut found = Vec::new();
    for (fullname, member, gw) in &names {
        let service = &resolved[fullname];
        assert_eq!(service.port, gw.addr().port(), "{member}: its own port");
        assert_eq!(service.host, format!("test-gw-{member}.local."));
        let txt = |key: &str| service.txt_properties.get_property_val_str(key);
        assert_eq!(txt("cluster"), Some("test-gw"), "{member}");
        assert_eq!(txt("rt"), Some("core.rd"), "{member}");
        assert!(
            !gw.log_text().contains("conflict"),
            "no mDNS name conflict: {}",
            gw.log_text()
        );
        found.push(SocketAddr::new(IpAddr::V4(A_V4), service.port));
    }
    // One registry behind both: register through the first instance found, look up at the
    // second.
    let at_a = Peer::with_socket(socket_in_b(&pair), found[0]);
    register(&at_a, "ep=via-dnssd&lt=120", "</t>");
    let at_b = Peer::with_socket(socket_in_b(&pair), found[1]);
    let links = lookup(&at_b, "/rd-lookup/ep?ep=via-dnssd");
    assert_eq!(links.len(), 1, "{links:?}");
    let _ = browser.shutdown();
}

#[test]
fn the_rd_is_resolved_from_another_namespace_used_and_withdrawn_on_sigterm() {
    let Some(pair) = netns_or_skip("dnssd") else {
        return;
    };
    let mut gw = Gateway::start_in_netns_rd(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:0".into()],
            extra_yaml: "pinger:\n  enabled: false\n".into(),
            ..Default::default()
        },
        "  dnssd: true\n  dnssd_interfaces: [veth0]\n",
    );
    let port = gw.addr().port();
    let pid = gw.pid().expect("running");
    assert!(
        gw.wait_for_log("dnssd: advertising", Duration::from_secs(5)),
        "{}",
        gw.log_text()
    );
    assert_eq!(
        wait_daemon_thread_netns(pid),
        vec![netns_inode(&pair, Side::A)],
        "the gateway runs exactly one mDNS daemon, inside namespace a"
    );

    let browser = daemon_in(&pair, Side::B);
    let events = browser.browse(RD_TYPE).expect("browse");
    let fullname = format!("test-gw.{RD_TYPE}");
    let mut seen = Vec::new();
    let service = wait_resolved(&events, &fullname, &mut seen).unwrap_or_else(|| {
        panic!(
            "{fullname} not resolved from namespace b; events: {seen:?}\n{}",
            gw.log_text()
        )
    });
    assert_eq!(service.port, port, "SRV port is the listener's");
    assert_eq!(service.host, "test-gw.local.");
    let txt = |key: &str| service.txt_properties.get_property_val_str(key);
    assert_eq!(txt("txtvers"), Some("1"));
    assert_eq!(txt("rt"), Some("core.rd"));
    assert_eq!(txt("path"), Some("/rd"));
    assert_eq!(txt("ep-lookup"), Some("/rd-lookup/ep"));
    assert_eq!(txt("res-lkup"), Some("/rd-lookup/res"));
    assert_eq!(txt("simple"), Some("/.well-known/rd"));
    let addrs: HashSet<IpAddr> = service.addresses.iter().map(|a| a.to_ip_addr()).collect();
    assert!(addrs.contains(&IpAddr::V4(A_V4)), "{addrs:?}");
    assert!(
        addrs.iter().all(IpAddr::is_ipv4),
        "a 0.0.0.0 listener advertises no IPv6 address: {addrs:?}"
    );

    // Register through the address found, from namespace b, and find the device in a lookup.
    let rd = SocketAddr::new(IpAddr::V4(A_V4), service.port);
    let peer = Peer::with_socket(socket_in_b(&pair), rd);
    register(
        &peer,
        "ep=found-by-dnssd&lt=120",
        "</sensors/temp>;rt=temperature",
    );
    let links = lookup(&peer, "/rd-lookup/ep?ep=found-by-dnssd");
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        links[0].get("base"),
        Some(format!("coap://{}", peer.local_addr()).as_str())
    );

    assert_eq!(gw.terminate(), Some(0), "clean exit on SIGTERM");
    let took = wait_removed(&events, &fullname);
    assert!(
        took.is_some(),
        "no goodbye for {fullname} within {GOODBYE_BUDGET:?}\n{}",
        gw.log_text()
    );
    assert!(
        gw.log_text().contains("dnssd: withdrew"),
        "{}",
        gw.log_text()
    );
    let _ = browser.shutdown();
}

#[test]
fn each_listening_port_is_its_own_instance_with_its_family_addresses() {
    let Some(pair) = netns_or_skip("dnssd-dual") else {
        return;
    };
    // Two listeners on different (free) ports: one instance each; [::] brings IPv6 addresses.
    let gw = Gateway::start_in_netns_rd(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:0".into(), "[::]:0".into()],
            extra_yaml: "pinger:\n  enabled: false\n".into(),
            ..Default::default()
        },
        "  dnssd: true\n  simple_registration: false\n",
    );
    let v4_port = gw.rd_addrs.iter().find(|a| a.is_ipv4()).expect("v4").port();
    let v6_port = gw.rd_addrs.iter().find(|a| a.is_ipv6()).expect("v6").port();
    assert_ne!(v4_port, v6_port);

    let browser = daemon_in(&pair, Side::B);
    let events = browser.browse(RD_TYPE).expect("browse");
    let mut seen = Vec::new();
    let mut wanted = vec![
        (format!("test-gw.{RD_TYPE}"), v4_port),
        (format!("test-gw port {v6_port}.{RD_TYPE}"), v6_port),
    ];
    let mut v6_addrs = HashSet::new();
    let deadline = Instant::now() + RESOLVE_BUDGET;
    while !wanted.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(service)) => {
                let Some(i) = wanted.iter().position(|(n, _)| *n == service.fullname) else {
                    continue;
                };
                let (name, port) = wanted.remove(i);
                assert_eq!(service.port, port, "{name}");
                assert_eq!(service.txt_properties.get_property_val_str("simple"), None);
                let addrs: HashSet<IpAddr> =
                    service.addresses.iter().map(|a| a.to_ip_addr()).collect();
                if port == v6_port {
                    assert_eq!(service.host, format!("test-gw-{v6_port}.local."));
                    assert!(addrs.iter().all(IpAddr::is_ipv6), "{name}: {addrs:?}");
                    v6_addrs = addrs;
                } else {
                    assert_eq!(service.host, "test-gw.local.");
                    assert!(addrs.contains(&IpAddr::V4(A_V4)), "{name}: {addrs:?}");
                    assert!(addrs.iter().all(IpAddr::is_ipv4), "{name}: {addrs:?}");
                }
            }
            Ok(other) => seen.push(format!("{other:?}")),
            Err(_) => panic!(
                "not resolved: {wanted:?}; events: {seen:?}\n{}",
                gw.log_text()
            ),
        }
    }
    assert!(v6_addrs.contains(&IpAddr::V6(A_V6)), "{v6_addrs:?}");

    // Register over IPv6 through what was found.
    let sock = pair
        .run_in(Side::B, || {
            UdpSocket::bind((B_V6, 0)).expect("bind v6 in b")
        })
        .expect("enter namespace b");
    let peer = Peer::with_socket(sock, SocketAddr::new(IpAddr::V6(A_V6), v6_port));
    register(&peer, "ep=v6-node&lt=120", "</x>;rt=x");
    assert_eq!(lookup(&peer, "/rd-lookup/ep?ep=v6-node").len(), 1);
    let _ = browser.shutdown();
}

#[test]
fn a_specific_listen_address_is_advertised_as_it_is() {
    let Some(pair) = netns_or_skip("dnssd-addr") else {
        return;
    };
    let gw = Gateway::start_in_netns_rd(
        &pair.a,
        GatewayOptions {
            listen: vec![format!("{A_V4}:0")],
            extra_yaml: "pinger:\n  enabled: false\n".into(),
            ..Default::default()
        },
        "  dnssd: true\n",
    );
    let browser = daemon_in(&pair, Side::B);
    let events = browser.browse(RD_TYPE).expect("browse");
    let fullname = format!("test-gw.{RD_TYPE}");
    let mut seen = Vec::new();
    let service = wait_resolved(&events, &fullname, &mut seen)
        .unwrap_or_else(|| panic!("not resolved: {seen:?}\n{}", gw.log_text()));
    let addrs: HashSet<IpAddr> = service.addresses.iter().map(|a| a.to_ip_addr()).collect();
    assert_eq!(addrs, HashSet::from([IpAddr::V4(A_V4)]));
    assert_eq!(service.port, gw.addr().port());
    let _ = browser.shutdown();
}

#[test]
fn dnssd_interfaces_keeps_the_advertisement_off_other_interfaces() {
    let Some(pair) = netns_or_skip("dnssd-lo") else {
        return;
    };
    // Only loopback: namespace b, behind veth0, must never hear of the RD.
    let gw = Gateway::start_in_netns_rd(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:0".into()],
            extra_yaml: "pinger:\n  enabled: false\n".into(),
            ..Default::default()
        },
        "  dnssd: true\n  dnssd_interfaces: [lo]\n",
    );
    assert!(gw.wait_for_log("dnssd: advertising", Duration::from_secs(5)));
    let browser = daemon_in(&pair, Side::B);
    let events = browser.browse(RD_TYPE).expect("browse");
    // Probing and announcing take about a second; a browser's queries are answered at once.
    let deadline = Instant::now() + Duration::from_secs(4);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceFound(_, name)) | Ok(ServiceEvent::ServiceRemoved(_, name)) => {
                panic!(
                    "{name} reached namespace b through veth0\n{}",
                    gw.log_text()
                )
            }
            Ok(ServiceEvent::ServiceResolved(service)) => {
                panic!("{} resolved through veth0", service.fullname)
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = browser.shutdown();
}

/// `device-sim` in namespace b on `port`, not registering itself.
fn sim_in_b(pair: &NetnsPair, rd: SocketAddr, port: u16) -> DeviceSim {
    let mut cmd = pair.command(Side::B, device_sim::bin());
    cmd.args(["--rd", &rd.to_string(), "--count", "1", "--no-register"])
        .args([
            "--bind",
            &B_V4.to_string(),
            "--first-port",
            &port.to_string(),
        ]);
    DeviceSim::spawn_command(cmd)
}

fn lookup_until(peer: &Peer, uri: &str, budget: Duration) -> Vec<Link> {
    let deadline = Instant::now() + budget;
    loop {
        let links = lookup(peer, uri);
        if !links.is_empty() || Instant::now() > deadline {
            return links;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_passive_device_advertised_as_coap_udp_is_discovered_and_registered() {
    let Some(pair) = netns_or_skip("dnssd-disc") else {
        return;
    };
    const DEVICE_PORT: u16 = 40_100;
    // A long interval: only the mDNS find can make the registration appear in time.
    let gw = Gateway::start_in_netns(
        &pair.a,
        GatewayOptions {
            listen: vec!["0.0.0.0:0".into()],
            extra_yaml: "discovery:\n  enabled: true\n  mdns: true\n  interval_s: 3600\n  \
                         lifetime_s: 7200\n  timeout_ms: 3000\npinger:\n  enabled: false\n"
                .into(),
            ..Default::default()
        },
    );
    let rd = SocketAddr::new(IpAddr::V4(A_V4), gw.addr().port());
    let mut sim = sim_in_b(&pair, rd, DEVICE_PORT);
    assert!(
        sim.ready(Duration::from_secs(15)),
        "device-sim did not come up in namespace b"
    );

    let advertiser = daemon_in(&pair, Side::B);
    let device = ServiceInfo::new(
        COAP_TYPE,
        "sim-lamp",
        "sim-lamp.local.",
        B_V4.to_string().as_str(),
        DEVICE_PORT,
        None,
    )
    .expect("service info");
    advertiser.register(device).expect("advertise _coap._udp");

    let peer = Peer::with_socket(socket_in_b(&pair), rd);
    let ep = format!("disc-10-77-0-2-{DEVICE_PORT}");
    let links = lookup_until(
        &peer,
        &format!("/rd-lookup/ep?ep={ep}"),
        Duration::from_secs(30),
    );
    assert_eq!(links.len(), 1, "{links:?}\n{}", gw.log_text());
    assert_eq!(
        links[0].get("base"),
        Some(format!("coap://{B_V4}:{DEVICE_PORT}").as_str())
    );
    assert_eq!(links[0].get("src"), Some("discovery"));
    let resources = lookup(&peer, &format!("/rd-lookup/res?ep={ep}"));
    assert!(
        resources
            .iter()
            .any(|l| l.target.ends_with("/sensors/temp")),
        "the device's own links were registered: {resources:?}"
    );
    assert!(gw
        .log_text()
        .contains("mDNS found sim-lamp._coap._udp.local."));

    // A goodbye stops the refreshing (the registration then expires with its lifetime).
    advertiser
        .unregister(&format!("sim-lamp.{COAP_TYPE}"))
        .expect("unregister");
    assert!(
        gw.wait_for_log("withdrawn; its registration expires", GOODBYE_BUDGET),
        "{}",
        gw.log_text()
    );
    let _ = advertiser.shutdown();
}

#[test]
fn an_unusable_mdns_port_is_a_config_error_not_a_silent_daemon() {
    let Some(pair) = netns_or_skip("dnssd-port") else {
        return;
    };
    // A dual-stack socket without address reuse holds UDP 5353 for both families in a.
    let _holder = pair
        .run_in(Side::A, || UdpSocket::bind("[::]:5353").expect("hold 5353"))
        .expect("enter namespace a");
    let tmp = tempfile::tempdir().unwrap();
    let opts = GatewayOptions {
        listen: vec!["0.0.0.0:0".into()],
        ..Default::default()
    };
    let config = common::write_config_rd(
        tmp.path(),
        &tmp.path().join("data"),
        &opts,
        "  dnssd: true\n",
    );
    let mut cmd = pair.command(Side::A, common::gateway_bin());
    cmd.arg("--config").arg(&config);
    let ran = run_bounded(&mut cmd, Duration::from_secs(20));
    assert_eq!(ran.status, Some(2), "exit code 2 (configuration): {ran:?}");
    assert!(
        ran.stderr.contains("rd.dnssd") && ran.stderr.contains("5353"),
        "the error names the key and the port: {}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
}

#[test]
fn a_gateway_without_dnssd_runs_no_mdns_daemon() {
    // The configuration every other test uses (here on the host's loopback, as they do), plus
    // unicast discovery, which must not bring up mDNS either.
    let gw = Gateway::start_with(GatewayOptions {
        extra_yaml: "discovery:\n  enabled: true\n  targets: [\"127.0.0.1:9\"]\n".into(),
        ..Default::default()
    });
    assert!(gw.wait_for_log("discovery:", Duration::from_secs(5)));
    let pid = gw.pid().expect("running");
    assert!(
        std::fs::read_dir(format!("/proc/{pid}/task")).is_ok(),
        "the gateway's threads are visible"
    );
    assert_eq!(wait_daemon_thread_netns(pid), Vec::<u64>::new());
    assert!(!gw.log_text().contains("dnssd"), "{}", gw.log_text());
}
