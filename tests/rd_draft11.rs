//! draft-ietf-core-resource-directory-11 compatibility (checklist §1b and "Compatibility
//! advice"): `con` as `base`, `POST /.well-known/core` as simple registration, the `/rd-group`
//! interface with `/rd-lookup/gp`, groups visible as RFC 9176 App. A registrations
//! (`et=core.rd-group`), and `/rd-lookup/d`. Empty lookups stay 2.05 (never draft-11's 4.04).

mod common;

use std::time::{Duration, Instant};

use common::coap_peer::*;
use common::Gateway;

#[test]
fn con_is_accepted_as_base() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=old1&con=coap://127.0.0.1:9999", "</s>;rt=\"x\"");
    let l = ep_link(&p, "old1").expect("listed");
    assert_eq!(l.get("base"), Some("coap://127.0.0.1:9999"), "{l:?}");
    assert_eq!(
        res_targets(&p, "/rd-lookup/res?ep=old1"),
        vec!["coap://127.0.0.1:9999/s".to_string()]
    );
    // And in an update.
    assert_eq!(
        p.request(&Req::post(&format!("{loc}?con=coap://127.0.0.1:8888")))
            .code,
        "2.04"
    );
    assert_eq!(
        res_targets(&p, "/rd-lookup/res?ep=old1"),
        vec!["coap://127.0.0.1:8888/s".to_string()]
    );
}

#[test]
fn post_well_known_core_is_accepted_as_simple_registration() {
    let gw = Gateway::start();
    let out = simple_register(
        gw.addr(),
        "/.well-known/core?ep=legacy1&lt=600",
        Some("</dev/a>;rt=\"legacy\",</dev/b>;rt=\"legacy\""),
        Duration::from_secs(8),
    );
    let resp = out.response.as_ref().expect("no answer");
    assert!(resp.code.starts_with("2.0"), "{out:?}");
    assert!(
        out.wkc_gets >= 1,
        "the RD never fetched /.well-known/core: {out:?}"
    );
    let p = Peer::new(gw.addr());
    let base = base_of(out.device);
    let want = vec![format!("{base}/dev/a"), format!("{base}/dev/b")];
    // draft-11 leaves the order of response and fetch open: allow a short settling time.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = res_targets(&p, "/rd-lookup/res?ep=legacy1");
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "got {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const GROUP_BASE: &str = "coap://[ff35:30:2001:db8::1]";

/// Register node1 and node2, then group them as `grp1`; returns the group's location.
fn two_members_and_a_group(p: &Peer) -> String {
    register(p, "ep=node1", "</light>;rt=\"light\"");
    register(p, "ep=node2", "</light>;rt=\"light\"");
    register(p, "ep=node3", "</other>");
    let r = p.request(
        &Req::post(&format!("/rd-group?gp=grp1&con={GROUP_BASE}"))
            .links("<>;ep=\"node1\",<>;ep=\"node2\""),
    );
    assert_eq!(r.code, "2.01", "group registration: {}", r.text());
    assert!(!r.location_path.is_empty(), "group without Location-Path");
    r.location()
}

#[test]
fn rd_group_registration_is_listed_by_group_lookup() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    two_members_and_a_group(&p);
    let groups = lookup(&p, "/rd-lookup/gp");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].get("gp"), Some("grp1"));
    assert_eq!(lookup(&p, "/rd-lookup/gp?gp=grp1").len(), 1);
    assert!(lookup(&p, "/rd-lookup/gp?gp=nogroup").is_empty());
}

#[test]
fn group_lookup_by_member_and_member_lookup_by_group() {
    // draft-11 §7: `/rd-lookup/gp?ep=node1` and `/rd-lookup/ep?gp=lights1`.
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    two_members_and_a_group(&p);
    let of_node1 = lookup(&p, "/rd-lookup/gp?ep=node1");
    assert_eq!(of_node1.len(), 1, "{of_node1:?}");
    assert_eq!(of_node1[0].get("gp"), Some("grp1"));
    assert!(lookup(&p, "/rd-lookup/gp?ep=node3").is_empty());
    let mut members: Vec<String> = lookup(&p, "/rd-lookup/ep?gp=grp1")
        .iter()
        .filter_map(|l| l.get("ep").map(str::to_string))
        .collect();
    members.sort();
    members.dedup();
    assert!(
        members.contains(&"node1".to_string()) && members.contains(&"node2".to_string()),
        "{members:?}"
    );
    assert!(!members.contains(&"node3".to_string()), "{members:?}");
}

#[test]
fn rd_group_is_visible_as_rfc9176_group_registration() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    two_members_and_a_group(&p);
    let groups = lookup(&p, "/rd-lookup/ep?et=core.rd-group");
    assert_eq!(groups.len(), 1, "{groups:?}");
    let g = &groups[0];
    assert!(g.values("et").contains(&"core.rd-group"), "{g:?}");
    assert!(
        g.get("ep") == Some("grp1") || g.get("gp") == Some("grp1"),
        "the group's name is missing: {g:?}"
    );
    assert_eq!(g.get("base"), Some(GROUP_BASE), "App. A: multicast base");
    // Ordinary endpoints are not groups.
    let eps = lookup(&p, "/rd-lookup/ep?ep=node*");
    assert!(
        eps.iter()
            .all(|l| !l.values("et").contains(&"core.rd-group")),
        "{eps:?}"
    );
}

#[test]
fn rd_group_with_unregistered_member_is_4_04_and_creates_nothing() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=node1", "</light>");
    let r = p.request(&Req::post("/rd-group?gp=grp9").links("<>;ep=\"node1\",<>;ep=\"ghost\""));
    assert_eq!(
        r.code, "4.04",
        "draft-11 §6.1: members must be registered first"
    );
    assert!(lookup(&p, "/rd-lookup/gp").is_empty());
}

#[test]
fn rd_group_without_gp_is_4_00() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=node1", "</light>");
    let r = p.request(&Req::post("/rd-group").links("<>;ep=\"node1\""));
    assert_eq!(r.code, "4.00");
    assert!(lookup(&p, "/rd-lookup/gp").is_empty());
}

#[test]
fn rd_group_delete_removes_the_group_but_not_its_members() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = two_members_and_a_group(&p);
    assert_eq!(p.delete(&loc).code, "2.02");
    let r = p.get("/rd-lookup/gp");
    assert_eq!(
        r.code, "2.05",
        "empty group lookup is 2.05, not draft-11's 4.04"
    );
    assert!(r.payload.is_empty(), "{}", r.text());
    assert!(lookup(&p, "/rd-lookup/ep?et=core.rd-group").is_empty());
    assert!(ep_link(&p, "node1").is_some());
    assert!(ep_link(&p, "node2").is_some());
    assert_eq!(p.delete(&loc).code, "4.04");
}

#[test]
fn domain_lookup_lists_the_sectors_in_use() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let r = p.get("/rd-lookup/d");
    assert_eq!(r.code, "2.05", "empty domain lookup is 2.05");
    register(&p, "ep=a&d=sector1", "</a>");
    register(&p, "ep=b&d=sector2", "</b>");
    register(&p, "ep=c&d=sector2", "</c>");
    let links = lookup(&p, "/rd-lookup/d");
    let ds: Vec<&str> = links.iter().filter_map(|l| l.get("d")).collect();
    assert!(
        ds.contains(&"sector1") && ds.contains(&"sector2"),
        "{links:?}"
    );
    assert_eq!(
        ds.iter().filter(|d| **d == "sector2").count(),
        1,
        "each sector once: {links:?}"
    );
}
