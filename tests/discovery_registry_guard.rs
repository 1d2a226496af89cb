//! The Registry's guard for Discovery (issue 9): `RegisterDiscovered` creates and refreshes
//! discovered registrations, but never replaces one the device made itself.

use std::net::SocketAddr;

use coap_gateway::registry::{
    self, DiscoveredOutcome, EndpointName, Register, RegisterDiscovered, RegistryConfig,
};
use link_format::{Link, Param};

fn start() -> (
    actix::Addr<registry::Registry>,
    registry::RegistryReader,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let (addr, reader) = registry::start(RegistryConfig {
        expiry_grace_s: 60,
        ..RegistryConfig::in_dir(dir.path().to_path_buf())
    })
    .unwrap();
    (addr, reader, dir)
}

fn source() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40001))
}

fn discovered(ep: &str, link: &str) -> Register {
    discovered_at(ep, link, source())
}

fn discovered_at(ep: &str, link: &str, source: SocketAddr) -> Register {
    Register {
        identity: None,
        ep: EndpointName::new(ep).unwrap(),
        d: None,
        base: Some("coap://127.0.0.1:40001".into()),
        lifetime_s: 60,
        attrs: vec![Param::new("src", Some("discovery"))],
        links: vec![Link::new(link)],
        source,
    }
}

#[actix_rt::test]
async fn discovery_creates_then_refreshes_its_own_registration() {
    let (registry, _reader, _dir) = start();
    let first = match registry
        .send(RegisterDiscovered(discovered("disc-a", "/x")))
        .await
        .unwrap()
        .unwrap()
    {
        DiscoveredOutcome::Registered(r) => r,
        other => panic!("expected a registration, got {other:?}"),
    };
    assert!(first.created);
    let second = match registry
        .send(RegisterDiscovered(discovered("disc-a", "/y")))
        .await
        .unwrap()
        .unwrap()
    {
        DiscoveredOutcome::Registered(r) => r,
        other => panic!("expected a refresh, got {other:?}"),
    };
    assert!(!second.created);
    assert_eq!(
        second.registration.id, first.registration.id,
        "same location"
    );
    assert_eq!(second.registration.links, vec![Link::new("/y")].into());
}

#[actix_rt::test]
async fn a_self_registered_device_is_never_overwritten() {
    let (registry, reader, _dir) = start();
    let own = Register {
        identity: None,
        ep: EndpointName::new("lamp").unwrap(),
        d: None,
        base: None,
        lifetime_s: 600,
        attrs: vec![Param::new("et", Some("oic.d.light"))],
        links: vec![Link::new("/own")],
        source: source(),
    };
    let mine = registry.send(own).await.unwrap().unwrap().registration;
    let outcome = registry
        .send(RegisterDiscovered(discovered("lamp", "/other")))
        .await
        .unwrap()
        .unwrap();
    match outcome {
        DiscoveredOutcome::SelfRegistered(r) => assert_eq!(r.id, mine.id),
        other => panic!("expected a skip, got {other:?}"),
    }
    let stored = reader.get(mine.id).expect("still registered");
    assert_eq!(stored.links, vec![Link::new("/own")].into());
    assert_eq!(stored.attrs, vec![Param::new("et", Some("oic.d.light"))]);
    assert_eq!(stored.lifetime_s, 600);
}

#[actix_rt::test]
async fn a_name_discovered_at_one_address_is_not_taken_by_another() {
    let (registry, reader, _dir) = start();
    let first = match registry
        .send(RegisterDiscovered(discovered("lamp", "/a")))
        .await
        .unwrap()
        .unwrap()
    {
        DiscoveredOutcome::Registered(r) => r.registration,
        other => panic!("expected a registration, got {other:?}"),
    };
    let elsewhere = SocketAddr::from(([127, 0, 0, 1], 40002));
    let outcome = registry
        .send(RegisterDiscovered(discovered_at("lamp", "/b", elsewhere)))
        .await
        .unwrap()
        .unwrap();
    match outcome {
        DiscoveredOutcome::NameTaken(r) => assert_eq!(r.id, first.id),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    let stored = reader.get(first.id).unwrap();
    assert_eq!(stored.source, source());
    assert_eq!(stored.links, vec![Link::new("/a")].into());
}
