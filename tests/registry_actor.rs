//! Registry semantics through the real actor and a real sled directory: register (create and
//! replace), update, set-status, remove, lifetime expiry with grace and revival, and the
//! events each one publishes (RFC 9176 §5, §5.3).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use coap_gateway::registry::{
    self, BaseOrigin, EndpointName, Register, Registration, RegistrationId, RegistryConfig,
    RegistryError, RegistryEvent, RemovalReason, Remove, Sector, SetStatus, Status, Subscribe,
    Update,
};
use link_format::{Link, Param};
use tokio::sync::mpsc;

struct Harness {
    addr: Addr<registry::Registry>,
    reader: registry::RegistryReader,
    events: mpsc::UnboundedReceiver<RegistryEvent>,
    dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path, grace_s: u32, max: Option<usize>) -> RegistryConfig {
    RegistryConfig {
        expiry_grace_s: grace_s,
        max_registrations: max,
        ..RegistryConfig::in_dir(dir)
    }
}

fn harness(grace_s: u32, max: Option<usize>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (addr, reader) = registry::start(config(dir.path(), grace_s, max)).unwrap();
    let (tx, events) = mpsc::unbounded_channel();
    addr.do_send(Subscribe(common::events::Collector(tx).start().recipient()));
    Harness {
        addr,
        reader,
        events,
        dir,
    }
}

fn src(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn register(ep: &str, d: Option<&str>, lt: u32, links: Vec<Link>) -> Register {
    Register {
        identity: None,
        ep: EndpointName::new(ep).unwrap(),
        d: d.map(|d| Sector::new(d).unwrap()),
        base: None,
        lifetime_s: lt,
        attrs: vec![Param::new("et", Some("oic.d.sensor"))],
        links,
        source: src(40000),
    }
}

/// How long an awaited event may take before it counts as missing: a defect bound for a loaded
/// 2-core box, not a timing claim (a 1 s lifetime's expiry is due after about 1 s).
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

async fn next_event(h: &mut Harness) -> RegistryEvent {
    tokio::time::timeout(EVENT_DEADLINE, h.events.recv())
        .await
        .unwrap_or_else(|_| panic!("no registry event within {EVENT_DEADLINE:?}"))
        .expect("the event channel stays open")
}

async fn assert_no_event(h: &mut Harness) {
    if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(150), h.events.recv()).await {
        panic!("unexpected event {e:?}");
    }
}

fn id_of(event: &RegistryEvent) -> RegistrationId {
    match event {
        RegistryEvent::Registered(r)
        | RegistryEvent::Updated(r)
        | RegistryEvent::StatusChanged(r) => r.id,
        RegistryEvent::Removed { registration, .. } => registration.id,
    }
}

#[actix_rt::test]
async fn register_creates_then_replaces_keeping_the_id() {
    let mut h = harness(60, None);
    let first = h
        .addr
        .send(register(
            "node1",
            None,
            60,
            vec![Link::new("/t").with("rt", Some("temperature"))],
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(first.created);
    let reg = &first.registration;
    assert_eq!(reg.base, "coap://127.0.0.1:40000");
    assert_eq!(reg.base_origin, BaseOrigin::FromSource);
    assert_eq!(reg.status, Status::Connected);
    assert!(reg.expires_at_ms >= reg.registered_at_ms + 60_000);
    assert!(matches!(next_event(&mut h).await, RegistryEvent::Registered(r) if r.id == reg.id));

    let mut again = register(
        "node1",
        None,
        120,
        vec![Link::new("/h").with("rt", Some("humidity"))],
    );
    again.base = Some("coap://[2001:db8::1]".into());
    let second = h.addr.send(again).await.unwrap().unwrap();
    assert!(!second.created);
    assert_eq!(
        second.registration.id, reg.id,
        "same ep+d keeps its location"
    );
    assert_eq!(second.registration.lifetime_s, 120);
    assert_eq!(second.registration.base, "coap://[2001:db8::1]");
    assert_eq!(second.registration.base_origin, BaseOrigin::Explicit);
    assert_eq!(
        second.registration.links,
        vec![Link::new("/h").with("rt", Some("humidity"))].into()
    );
    assert_eq!(second.registration.registered_at_ms, reg.registered_at_ms);
    assert!(matches!(next_event(&mut h).await, RegistryEvent::Updated(r) if r.id == reg.id));

    // A different sector is a different registration.
    let other = h
        .addr
        .send(register("node1", Some("roof"), 60, vec![]))
        .await
        .unwrap()
        .unwrap();
    assert!(other.created);
    assert_ne!(other.registration.id, reg.id);
    next_event(&mut h).await;

    let ep = EndpointName::new("node1").unwrap();
    assert_eq!(h.reader.find(&ep, None).unwrap().links[0].target, "/h");
    assert_eq!(h.reader.find_ep(&ep).len(), 2);
    assert_eq!(h.reader.len(), 2);
    let by_rt = h
        .reader
        .with_index(|i| i.ids_with_link_attr("rt", "temp", true));
    assert_eq!(
        by_rt.unwrap().len(),
        0,
        "replaced links leave the inverted index"
    );
    let by_rt = h
        .reader
        .with_index(|i| i.ids_with_link_attr("rt", "humidity", false));
    assert_eq!(by_rt.unwrap().into_iter().collect::<Vec<_>>(), vec![reg.id]);
}

#[actix_rt::test]
async fn update_renews_and_overrides_and_moves_a_derived_base() {
    let mut h = harness(60, None);
    let reg = h
        .addr
        .send(register("dev", None, 30, vec![Link::new("/a")]))
        .await
        .unwrap()
        .unwrap()
        .registration;
    next_event(&mut h).await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    let updated = h
        .addr
        .send(Update {
            identity: None,
            id: reg.id,
            lifetime_s: Some(100),
            base: None,
            attrs: vec![
                Param::new("et", Some("core.rd-ep")),
                Param::new("x", Some("1")),
            ],
            source: src(40001),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.lifetime_s, 100);
    assert_eq!(
        updated.base, "coap://127.0.0.1:40001",
        "a derived base follows the source"
    );
    assert_eq!(updated.source, src(40001));
    assert_eq!(
        updated.attrs,
        vec![
            Param::new("et", Some("core.rd-ep")),
            Param::new("x", Some("1"))
        ]
    );
    assert!(updated.expires_at_ms >= updated.updated_at_ms + 100_000);
    assert!(updated.updated_at_ms > reg.updated_at_ms);
    assert_eq!(updated.links, reg.links, "links are untouched by an update");
    assert!(matches!(
        next_event(&mut h).await,
        RegistryEvent::Updated(_)
    ));

    // An explicit base sticks even when the source moves again.
    let explicit = h
        .addr
        .send(Update {
            identity: None,
            id: reg.id,
            lifetime_s: None,
            base: Some("coap://device.example".into()),
            attrs: vec![],
            source: src(40002),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(explicit.base, "coap://device.example");
    assert_eq!(explicit.lifetime_s, 100);
    next_event(&mut h).await;
    let moved = h
        .addr
        .send(Update {
            identity: None,
            id: reg.id,
            lifetime_s: None,
            base: None,
            attrs: vec![],
            source: src(40003),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.base, "coap://device.example");
    assert_eq!(moved.base_origin, BaseOrigin::Explicit);
    next_event(&mut h).await;

    let missing = h
        .addr
        .send(Update {
            identity: None,
            id: RegistrationId(9999),
            lifetime_s: None,
            base: None,
            attrs: vec![],
            source: src(1),
        })
        .await
        .unwrap();
    assert!(matches!(
        missing,
        Err(RegistryError::NotFound(RegistrationId(9999)))
    ));
}

#[actix_rt::test]
async fn status_changes_are_published_once_and_an_update_reconnects() {
    let mut h = harness(60, None);
    let id = h
        .addr
        .send(register("p", None, 60, vec![]))
        .await
        .unwrap()
        .unwrap()
        .registration
        .id;
    next_event(&mut h).await;

    let down = SetStatus {
        id,
        status: Status::Disconnected,
    };
    assert!(h.addr.send(down.clone()).await.unwrap().unwrap());
    match next_event(&mut h).await {
        RegistryEvent::StatusChanged(r) => assert_eq!(r.status, Status::Disconnected),
        other => panic!("expected StatusChanged, got {other:?}"),
    }
    assert!(
        !h.addr.send(down).await.unwrap().unwrap(),
        "no change, no event"
    );
    assert_no_event(&mut h).await;
    assert_eq!(h.reader.get(id).unwrap().status, Status::Disconnected);

    h.addr
        .send(Update {
            identity: None,
            id,
            lifetime_s: None,
            base: None,
            attrs: vec![],
            source: src(40000),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        next_event(&mut h).await,
        RegistryEvent::Updated(_)
    ));
    match next_event(&mut h).await {
        RegistryEvent::StatusChanged(r) => assert_eq!(r.status, Status::Connected),
        other => panic!("expected StatusChanged, got {other:?}"),
    }
    let unknown = h
        .addr
        .send(SetStatus {
            id: RegistrationId(424242),
            status: Status::Connected,
        })
        .await
        .unwrap();
    assert!(matches!(unknown, Err(RegistryError::NotFound(_))));
}

#[actix_rt::test]
async fn remove_deletes_and_publishes() {
    let mut h = harness(60, None);
    let id = h
        .addr
        .send(register(
            "gone",
            None,
            60,
            vec![Link::new("/x").with("rt", Some("r"))],
        ))
        .await
        .unwrap()
        .unwrap()
        .registration
        .id;
    next_event(&mut h).await;
    let removed = h.addr.send(Remove::by_gateway(id)).await.unwrap().unwrap();
    assert_eq!(removed.id, id);
    match next_event(&mut h).await {
        RegistryEvent::Removed {
            registration,
            reason,
        } => {
            assert_eq!(registration.id, id);
            assert_eq!(reason, RemovalReason::Deleted);
        }
        other => panic!("expected Removed, got {other:?}"),
    }
    assert!(h.reader.get(id).is_none());
    assert!(h.reader.is_empty());
    assert_eq!(
        h.reader
            .with_index(|i| i.ids_with_link_attr("rt", "r", false))
            .unwrap()
            .len(),
        0
    );
    assert!(matches!(
        h.addr.send(Remove::by_gateway(id)).await.unwrap(),
        Err(RegistryError::NotFound(_))
    ));
    // A new registration of the same name gets a new id: ids are never reused.
    let again = h
        .addr
        .send(register("gone", None, 60, vec![]))
        .await
        .unwrap()
        .unwrap();
    assert!(again.created);
    assert!(again.registration.id > id);
}

#[actix_rt::test]
async fn expiry_hides_then_an_update_in_grace_revives() {
    let mut h = harness(60, None);
    let short = h
        .addr
        .send(register("short", None, 1, vec![]))
        .await
        .unwrap()
        .unwrap()
        .registration;
    let long = h
        .addr
        .send(register("long", None, 60, vec![]))
        .await
        .unwrap()
        .unwrap()
        .registration;
    next_event(&mut h).await;
    next_event(&mut h).await;

    match next_event(&mut h).await {
        RegistryEvent::Removed {
            registration,
            reason,
        } => {
            assert_eq!(registration.id, short.id);
            assert_eq!(reason, RemovalReason::Expired);
        }
        other => panic!("expected expiry, got {other:?}"),
    }
    assert!(h.reader.get(short.id).is_none());
    assert!(h.reader.get(long.id).is_some());
    assert_eq!(h.reader.len(), 1);
    let ep = EndpointName::new("short").unwrap();
    assert!(h.reader.find(&ep, None).is_none());
    assert!(matches!(
        h.addr.send(Remove::by_gateway(short.id)).await.unwrap(),
        Err(RegistryError::NotFound(_))
    ));

    let revived = h
        .addr
        .send(Update {
            identity: None,
            id: short.id,
            lifetime_s: Some(60),
            base: None,
            attrs: vec![],
            source: src(40000),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revived.id, short.id);
    assert!(matches!(next_event(&mut h).await, RegistryEvent::Registered(r) if r.id == short.id));
    assert_eq!(h.reader.find(&ep, None).unwrap().id, short.id);
    assert_eq!(h.reader.len(), 2);
}

#[actix_rt::test]
async fn a_reregistration_in_grace_keeps_the_id_and_is_announced_as_new() {
    let mut h = harness(60, None);
    let first = h
        .addr
        .send(register("back", None, 1, vec![]))
        .await
        .unwrap()
        .unwrap()
        .registration;
    next_event(&mut h).await;
    assert!(matches!(
        next_event(&mut h).await,
        RegistryEvent::Removed {
            reason: RemovalReason::Expired,
            ..
        }
    ));
    let again = h
        .addr
        .send(register("back", None, 60, vec![]))
        .await
        .unwrap()
        .unwrap();
    assert!(again.created);
    assert_eq!(again.registration.id, first.id);
    assert!(matches!(
        next_event(&mut h).await,
        RegistryEvent::Registered(_)
    ));
}

#[actix_rt::test]
async fn after_the_grace_an_expired_registration_is_gone_for_good() {
    let mut h = harness(1, None);
    let reg = h
        .addr
        .send(register("brief", None, 1, vec![]))
        .await
        .unwrap()
        .unwrap()
        .registration;
    next_event(&mut h).await;
    let expired = next_event(&mut h).await;
    assert!(
        matches!(
            &expired,
            RegistryEvent::Removed {
                reason: RemovalReason::Expired,
                ..
            }
        ),
        "{expired:?}"
    );
    assert_eq!(id_of(&expired), reg.id);
    // The purge at the end of the 1 s grace publishes nothing: poll the reader for it.
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    while h
        .reader
        .with_index(|i| i.get_including_expired(reg.id).is_some())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired registration was not purged within {EVENT_DEADLINE:?} of its grace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = h
        .addr
        .send(Update {
            identity: None,
            id: reg.id,
            lifetime_s: None,
            base: None,
            attrs: vec![],
            source: src(40000),
        })
        .await
        .unwrap();
    assert!(matches!(late, Err(RegistryError::NotFound(_))), "{late:?}");
    assert!(h
        .reader
        .with_index(|i| i.get_including_expired(reg.id).is_none()));
}

#[actix_rt::test]
async fn a_full_registry_refuses_new_endpoints_but_accepts_replacements() {
    let mut h = harness(60, Some(2));
    let a = h
        .addr
        .send(register("a", None, 60, vec![Link::new("/old")]))
        .await
        .unwrap()
        .unwrap()
        .registration;
    h.addr
        .send(register("b", None, 60, vec![]))
        .await
        .unwrap()
        .unwrap();
    next_event(&mut h).await;
    next_event(&mut h).await;
    let third = h.addr.send(register("c", None, 60, vec![])).await.unwrap();
    assert!(matches!(third, Err(RegistryError::Full { limit: 2 })));
    assert!(h
        .reader
        .find(&EndpointName::new("c").unwrap(), None)
        .is_none());
    assert_no_event(&mut h).await;

    // A replacement of a held name is not a new endpoint: accepted in place, with its content.
    let replaced = h
        .addr
        .send(register(
            "a",
            None,
            90,
            vec![Link::new("/new").with("rt", Some("fresh"))],
        ))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a full registry refused a replacement: {e}"));
    assert!(!replaced.created, "a replacement is not a creation");
    let reg = &replaced.registration;
    assert_eq!(reg.id, a.id, "the replacement keeps the location");
    assert_eq!(reg.lifetime_s, 90);
    assert_eq!(
        reg.links,
        vec![Link::new("/new").with("rt", Some("fresh"))].into()
    );
    assert_eq!(reg.registered_at_ms, a.registered_at_ms);
    assert!(reg.expires_at_ms >= reg.updated_at_ms + 90_000);
    assert!(matches!(next_event(&mut h).await, RegistryEvent::Updated(r) if r.id == a.id));
    let stored = h
        .reader
        .find(&EndpointName::new("a").unwrap(), None)
        .expect("a is still registered");
    assert_eq!(stored.id, a.id);
    assert_eq!(stored.lifetime_s, 90);
    assert_eq!(stored.links[0].target, "/new");
    assert_eq!(h.reader.len(), 2);
}

#[actix_rt::test]
async fn concurrent_registrations_are_all_acknowledged_with_distinct_ids_and_ordered_events() {
    let mut h = harness(60, None);
    let sends: Vec<_> = (0..200)
        .map(|i| {
            h.addr
                .send(register(&format!("c{i}"), None, 60, vec![Link::new("/s")]))
        })
        .collect();
    let replies: Vec<Arc<Registration>> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().registration)
        .collect();
    let mut ids: Vec<u64> = replies.iter().map(|r| r.id.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    // Events arrive in the order the changes were applied, which is id order here.
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.push(id_of(&next_event(&mut h).await).0);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(seen, sorted);
    assert_eq!(h.reader.len(), 200);
}

#[actix_rt::test]
async fn start_reports_a_database_held_by_another_registry() {
    let h = harness(60, None);
    let dir = h.dir.path();
    match registry::start(config(dir, 60, None)) {
        Err(registry::StoreError::Locked { path }) => assert_eq!(path, dir),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("two registries opened one database"),
    }
    // The first registry is unaffected: it still registers, and keeps what it registered.
    let still = h
        .addr
        .send(register("still", None, 60, vec![]))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the first registry broke: {e}"));
    assert!(still.created);
    assert_eq!(
        h.reader
            .find(&EndpointName::new("still").unwrap(), None)
            .map(|r| r.id),
        Some(still.registration.id)
    );
}
