//! The index's unit tests: lookups by id, name and attribute, replacement, removal and
//! expiry, checked through every view at once (they share one sample index).

use super::*;
use crate::registry::model::{BaseOrigin, EndpointName, Sector, Status};
use link_format::{Link, Param};

fn reg(
    id: u64,
    ep: &str,
    d: Option<&str>,
    expires_at_ms: u64,
    links: Vec<Link>,
) -> Arc<Registration> {
    Arc::new(Registration {
        status_history: Default::default(),
        last_seen: Default::default(),
        identity: None,
        id: RegistrationId(id),
        ep: EndpointName::new(ep).unwrap(),
        d: d.map(|d| Sector::new(d).unwrap()),
        base: "coap://127.0.0.1:9".into(),
        base_origin: BaseOrigin::FromSource,
        lifetime_s: 60,
        attrs: vec![Param::new("et", Some("oic.d.sensor core.rd-ep"))],
        links: links.into(),
        status: Status::Connected,
        registered_at_ms: 0,
        updated_at_ms: 0,
        expires_at_ms,
        source: "127.0.0.1:9".parse().unwrap(),
    })
}

fn ids(v: &[u64]) -> BTreeSet<RegistrationId> {
    v.iter().copied().map(RegistrationId).collect()
}

fn sample() -> Index {
    let mut index = Index::new();
    index.insert(reg(
        1,
        "node1",
        None,
        1_000,
        vec![
            Link::new("/t")
                .with("rt", Some("temperature core.s"))
                .with("ct", Some("0 60")),
            Link::new("/l")
                .with("rt", Some("light"))
                .with("if", Some("core.a")),
        ],
    ));
    index.insert(reg(
        2,
        "node2",
        Some("roof"),
        2_000,
        vec![Link::new("/t")
            .with("rt", Some("temp-hires"))
            .with("obs", None)],
    ));
    index.insert(reg(
        3,
        "node1",
        Some("roof"),
        3_000,
        vec![Link::new("/x")
            .with("rel", Some("alternate"))
            .with("rt", Some("tempo"))],
    ));
    index
}

#[test]
fn finds_by_id_and_by_endpoint_and_sector() {
    let index = sample();
    assert_eq!(index.get(RegistrationId(2)).unwrap().ep.as_str(), "node2");
    assert!(index.get(RegistrationId(9)).is_none());
    let node1 = EndpointName::new("node1").unwrap();
    let roof = Sector::new("roof").unwrap();
    assert_eq!(index.find(&node1, None).unwrap().id, RegistrationId(1));
    assert_eq!(
        index.find(&node1, Some(&roof)).unwrap().id,
        RegistrationId(3)
    );
    let node2 = EndpointName::new("node2").unwrap();
    assert!(index.find(&node2, None).is_none());
    let all: Vec<u64> = index.find_ep(&node1).map(|r| r.id.0).collect();
    assert_eq!(all, vec![1, 3]);
    assert_eq!(index.len_live(), 3);
}

#[test]
fn exact_link_attribute_lookup_matches_whole_words_only() {
    let index = sample();
    assert_eq!(
        index.ids_with_link_attr("rt", "temperature", false),
        Some(ids(&[1]))
    );
    assert_eq!(
        index.ids_with_link_attr("rt", "core.s", false),
        Some(ids(&[1]))
    );
    assert_eq!(
        index.ids_with_link_attr("rt", "temp", false),
        Some(ids(&[]))
    );
    assert_eq!(index.ids_with_link_attr("ct", "60", false), Some(ids(&[1])));
    assert_eq!(
        index.ids_with_link_attr("if", "core.a", false),
        Some(ids(&[1]))
    );
    assert_eq!(
        index.ids_with_link_attr("rel", "alternate", false),
        Some(ids(&[3]))
    );
}

#[test]
fn prefix_link_attribute_lookup_is_a_range_scan() {
    let index = sample();
    assert_eq!(
        index.ids_with_link_attr("rt", "temp", true),
        Some(ids(&[1, 2, 3]))
    );
    assert_eq!(
        index.ids_with_link_attr("rt", "temp-", true),
        Some(ids(&[2]))
    );
    assert_eq!(
        index.ids_with_link_attr("rt", "", true),
        Some(ids(&[1, 2, 3]))
    );
    assert_eq!(index.ids_with_link_attr("rt", "z", true), Some(ids(&[])));
    // The range must stop at the attribute name: `rt` values never leak into `rel`.
    assert_eq!(index.ids_with_link_attr("rel", "", true), Some(ids(&[3])));
}

#[test]
fn unindexed_attributes_answer_none() {
    let index = sample();
    assert_eq!(index.ids_with_link_attr("obs", "", true), None);
    assert_eq!(index.ids_with_link_attr("title", "x", false), None);
    assert_eq!(index.ids_with_endpoint_attr("base", "x", false), None);
}

#[test]
fn endpoint_attribute_lookup_covers_ep_d_and_et() {
    let index = sample();
    assert_eq!(
        index.ids_with_endpoint_attr("ep", "node1", false),
        Some(ids(&[1, 3]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("ep", "node", true),
        Some(ids(&[1, 2, 3]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("d", "roof", false),
        Some(ids(&[2, 3]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("et", "core.rd-ep", false),
        Some(ids(&[1, 2, 3]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("et", "oic.", true),
        Some(ids(&[1, 2, 3]))
    );
}

#[test]
fn replacing_a_registration_reindexes_it_and_bumps_the_version() {
    let mut index = sample();
    let before = index.version();
    let previous = index.insert(reg(
        1,
        "node1",
        None,
        5_000,
        vec![Link::new("/h").with("rt", Some("humidity"))],
    ));
    assert_eq!(previous.unwrap().links.len(), 2);
    assert!(index.version() > before);
    assert_eq!(
        index.ids_with_link_attr("rt", "temperature", false),
        Some(ids(&[]))
    );
    assert_eq!(
        index.ids_with_link_attr("rt", "humidity", false),
        Some(ids(&[1]))
    );
    assert_eq!(
        index.ids_with_link_attr("if", "core.a", false),
        Some(ids(&[]))
    );
    // The old deadline is gone, the new one is tracked.
    assert_eq!(index.next_deadline(), Some(2_000));
    index.remove(RegistrationId(2));
    index.remove(RegistrationId(3));
    assert_eq!(index.next_deadline(), Some(5_000));
    assert_eq!(index.by_name.len(), 1);
    assert_eq!(index.by_ep_d.len(), 1);
    // Emptied postings are dropped rather than kept as empty sets.
    assert_eq!(index.link_attrs.len(), 1);
    assert_eq!(
        index.link_attrs["rt"].keys().collect::<Vec<_>>(),
        vec!["humidity"]
    );
}

#[test]
fn an_in_place_update_is_visible_through_every_view() {
    let mut index = sample();
    let mut next = (**index.get(RegistrationId(3)).unwrap()).clone();
    next.expires_at_ms = 500;
    next.attrs = vec![Param::new("et", Some("changed"))];
    index.insert(Arc::new(next));
    let node1 = EndpointName::new("node1").unwrap();
    let roof = Sector::new("roof").unwrap();
    for reg in [
        index.get(RegistrationId(3)).unwrap(),
        index.find(&node1, Some(&roof)).unwrap(),
        index.find_ep(&node1).last().unwrap(),
    ] {
        assert_eq!(reg.expires_at_ms, 500);
    }
    assert_eq!(index.next_deadline(), Some(500));
    assert_eq!(
        index.ids_with_endpoint_attr("et", "changed", false),
        Some(ids(&[3]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("et", "oic.d.sensor", false),
        Some(ids(&[1, 2]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("d", "roof", false),
        Some(ids(&[2, 3]))
    );
    assert_eq!(
        index.ids_with_link_attr("rel", "alternate", false),
        Some(ids(&[3]))
    );
    let expired = index.expire_due(600);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, RegistrationId(3));
}

#[test]
fn remove_forgets_every_index_entry() {
    let mut index = sample();
    let removed = index.remove(RegistrationId(1)).unwrap();
    assert_eq!(removed.ep.as_str(), "node1");
    assert!(index.get(RegistrationId(1)).is_none());
    let node1 = EndpointName::new("node1").unwrap();
    assert!(index.find(&node1, None).is_none());
    assert!(index.find_id_including_expired(&node1, None).is_none());
    assert_eq!(index.find_ep(&node1).count(), 1);
    assert_eq!(
        index.ids_with_link_attr("rt", "temperature", false),
        Some(ids(&[]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("ep", "node1", false),
        Some(ids(&[3]))
    );
    assert!(index.remove(RegistrationId(1)).is_none());
    assert_eq!(index.len_live(), 2);
}

#[test]
fn expiry_hides_but_keeps_until_the_grace_ends() {
    let mut index = sample();
    assert_eq!(index.next_deadline(), Some(1_000));
    assert_eq!(
        index.live(1_500).count(),
        2,
        "past lifetime is hidden even before the timer"
    );
    let due = index.expire_due(2_000);
    let due_ids: Vec<u64> = due.iter().map(|r| r.id.0).collect();
    assert_eq!(due_ids, vec![1, 2]);
    assert_eq!(index.next_deadline(), Some(3_000));
    assert_eq!(index.next_grave(), Some(1_000));
    assert!(index.get(RegistrationId(1)).is_none());
    assert!(index.get_including_expired(RegistrationId(1)).is_some());
    assert!(index.is_in_grace(RegistrationId(1)));
    let node1 = EndpointName::new("node1").unwrap();
    assert!(index.find(&node1, None).is_none());
    assert_eq!(
        index.find_id_including_expired(&node1, None),
        Some(RegistrationId(1))
    );
    assert_eq!(
        index.ids_with_link_attr("rt", "temp", true),
        Some(ids(&[3]))
    );
    assert_eq!(index.len_live(), 1);
    assert_eq!(index.len_in_grace(), 2);

    // Revival: inserting the same id again makes it live and indexed.
    let mut revived = (**index.get_including_expired(RegistrationId(2)).unwrap()).clone();
    revived.expires_at_ms = 9_000;
    index.insert(Arc::new(revived));
    assert_eq!(
        index.ids_with_link_attr("rt", "temp-hires", false),
        Some(ids(&[2]))
    );
    assert!(!index.is_in_grace(RegistrationId(2)));

    let purged = index.purge_graves(1_000);
    assert_eq!(purged.iter().map(|r| r.id.0).collect::<Vec<_>>(), vec![1]);
    assert!(index.get_including_expired(RegistrationId(1)).is_none());
    assert!(index.find_id_including_expired(&node1, None).is_none());
    assert_eq!(index.next_grave(), None);
}

#[test]
fn live_iterates_in_id_order_and_pages_from_an_id() {
    let index = sample();
    let order: Vec<u64> = index.live(0).map(|r| r.id.0).collect();
    assert_eq!(order, vec![1, 2, 3]);
    let rest: Vec<u64> = index
        .live_from(RegistrationId(2), 0)
        .map(|r| r.id.0)
        .collect();
    assert_eq!(rest, vec![2, 3]);
}

#[test]
fn endpoints_sharing_a_hash_bucket_are_told_apart() {
    let mut index = sample();
    // Force a collision: file node2's id under node1's hash as well.
    let node1 = EndpointName::new("node1").unwrap();
    let hash = index.name_hash(&node1, None);
    index.by_ep_d.get_mut(&hash).unwrap().add(RegistrationId(2));
    assert_eq!(index.find(&node1, None).unwrap().id, RegistrationId(1));
    index.remove(RegistrationId(1));
    assert!(
        index.find(&node1, None).is_none(),
        "node2 must not answer for node1"
    );
    let mut bucket = Bucket::One(RegistrationId(1));
    bucket.add(RegistrationId(2));
    bucket.add(RegistrationId(2));
    assert_eq!(bucket.ids(), &[RegistrationId(1), RegistrationId(2)]);
    assert!(!bucket.remove(RegistrationId(1)));
    assert!(matches!(bucket, Bucket::One(RegistrationId(2))));
    assert!(bucket.remove(RegistrationId(2)));
}

#[test]
fn endpoint_name_lookups_do_not_match_invalid_or_foreign_names() {
    let index = sample();
    assert_eq!(
        index.ids_with_endpoint_attr("ep", "node1x", false),
        Some(ids(&[]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("ep", "node1", true),
        Some(ids(&[1, 3]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("ep", "", true),
        Some(ids(&[1, 2, 3]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("ep", "a\u{1}", true),
        Some(ids(&[]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("ep", &"n".repeat(64), true),
        Some(ids(&[]))
    );
    assert_eq!(
        index.ids_with_endpoint_attr("ep", "o", true),
        Some(ids(&[]))
    );
}

#[test]
fn loaded_graves_are_revivable_and_not_live() {
    let mut index = Index::new();
    index.insert_in_grace(reg(
        7,
        "old",
        None,
        100,
        vec![Link::new("/a").with("rt", Some("x"))],
    ));
    assert_eq!(index.len_live(), 0);
    assert!(index.get_including_expired(RegistrationId(7)).is_some());
    assert_eq!(index.ids_with_link_attr("rt", "x", false), Some(ids(&[])));
    assert_eq!(index.next_grave(), Some(100));
}
