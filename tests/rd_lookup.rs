//! Resource and endpoint lookup (RFC 9176 §6, §6.1, §6.2, §6.3, §6.4; checklist R24–R30):
//! absolute hrefs, anchors only where registered, every filter rule (exact, trailing `*`, AND,
//! space-separated relation types, cross-matching, href/anchor in URI form, et, d), paging,
//! the empty result, Observe, Block2 with a large result, and IPv6.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::coap_peer::*;
use common::{Gateway, GatewayOptions};

#[test]
fn empty_lookup_is_2_05_with_empty_payload_never_4_04() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    for uri in [
        "/rd-lookup/res",
        "/rd-lookup/ep",
        "/rd-lookup/res?rt=nothing",
        "/rd-lookup/ep?ep=nobody",
    ] {
        let r = p.get(uri);
        assert_eq!(r.code, "2.05", "{uri}: RFC 9176 §6.2 empty result is 2.05");
        assert!(r.payload.is_empty(), "{uri}: {:?}", r.text());
    }
    register(&p, "ep=someone", "</a>;rt=\"x\"");
    let r = p.get("/rd-lookup/res?rt=nothing");
    assert_eq!(r.code, "2.05");
    assert!(r.payload.is_empty());
}

/// Three endpoints from three sockets (three derived bases).
struct World {
    gw: Gateway,
    a: Peer,
    b: Peer,
    c: Peer,
    loc1: String,
}

impl World {
    fn new() -> World {
        let gw = Gateway::start();
        let a = Peer::new(gw.addr());
        let b = Peer::new(gw.addr());
        let c = Peer::new(gw.addr());
        let loc1 = register(
            &a,
            "ep=node1&et=oic.d.sensor",
            "</sensors/temp>;rt=\"temperature\";if=\"sensor\",\
             </sensors/light>;rt=\"light-lux\";if=\"sensor\",\
             </act/fan>;rt=\"actuator fan\";if=\"core.a\",\
             <http://www.example.com/sensors/temp>;anchor=\"/sensors/temp\";rel=\"describedby\"",
        );
        register(
            &b,
            "ep=node2&d=floor2",
            "</t>;rt=\"temperature-c\";if=\"sensor\",</lamp>;rt=\"light\";if=\"core.a\"",
        );
        register(&c, "ep=node3", "</s>;rt=\"temperature\";if=\"core.a\"");
        World { gw, a, b, c, loc1 }
    }
    fn a(&self, path: &str) -> String {
        format!("{}{path}", self.a.derived_base())
    }
    fn b(&self, path: &str) -> String {
        format!("{}{path}", self.b.derived_base())
    }
    fn c(&self, path: &str) -> String {
        format!("{}{path}", self.c.derived_base())
    }
    fn res(&self, query: &str) -> Vec<String> {
        res_targets(&self.a, &format!("/rd-lookup/res?{query}"))
    }
    fn eps(&self, query: &str) -> Vec<String> {
        let mut v: Vec<String> = lookup(&self.a, &format!("/rd-lookup/ep?{query}"))
            .into_iter()
            .map(|l| l.get("ep").unwrap_or("<no ep>").to_string())
            .collect();
        v.sort();
        v
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn resource_lookup_returns_absolute_targets_and_anchor_only_where_registered() {
    let w = World::new();
    let got = lookup(&w.a, "/rd-lookup/res?ep=node1");
    let want = vec![
        link(
            &w.a("/sensors/temp"),
            &[("rt", "temperature"), ("if", "sensor")],
        ),
        link(
            &w.a("/sensors/light"),
            &[("rt", "light-lux"), ("if", "sensor")],
        ),
        link(
            &w.a("/act/fan"),
            &[("rt", "actuator fan"), ("if", "core.a")],
        ),
        link(
            "http://www.example.com/sensors/temp",
            &[("anchor", &w.a("/sensors/temp")), ("rel", "describedby")],
        ),
    ];
    assert_eq!(link_set(&got), link_set(&want), "{got:?}");
}

#[test]
fn resource_lookup_by_exact_rt() {
    // RFC 9176 §6.3's example query, adapted to our loopback bases.
    let w = World::new();
    assert_eq!(
        w.res("rt=temperature"),
        sorted(vec![w.a("/sensors/temp"), w.c("/s")])
    );
}

#[test]
fn resource_lookup_with_trailing_wildcard() {
    let w = World::new();
    assert_eq!(
        w.res("rt=temp*"),
        sorted(vec![w.a("/sensors/temp"), w.b("/t"), w.c("/s")])
    );
}

#[test]
fn resource_lookup_by_if() {
    let w = World::new();
    assert_eq!(
        w.res("if=sensor"),
        sorted(vec![w.a("/sensors/temp"), w.a("/sensors/light"), w.b("/t")])
    );
}

#[test]
fn multiple_filters_must_all_match() {
    let w = World::new();
    assert_eq!(
        w.res("rt=temperature&if=sensor"),
        vec![w.a("/sensors/temp")]
    );
    assert_eq!(w.res("rt=temperature&if=core.a"), vec![w.c("/s")]);
    assert!(w.res("rt=temperature&if=nothing").is_empty());
}

#[test]
fn space_separated_rt_matches_any_value() {
    let w = World::new();
    assert_eq!(w.res("rt=fan"), vec![w.a("/act/fan")]);
    assert_eq!(w.res("rt=actuator"), vec![w.a("/act/fan")]);
    assert_eq!(w.res("rt=act*"), vec![w.a("/act/fan")]);
}

#[test]
fn resource_lookup_by_rel_and_anchor_in_uri_form() {
    let w = World::new();
    assert_eq!(
        w.res("rel=describedby"),
        vec!["http://www.example.com/sensors/temp".to_string()]
    );
    assert_eq!(
        w.res(&format!("anchor={}", w.a("/sensors/temp"))),
        vec!["http://www.example.com/sensors/temp".to_string()]
    );
}

#[test]
fn resource_lookup_by_href_in_uri_form_exact_and_wildcard() {
    let w = World::new();
    assert_eq!(
        w.res(&format!("href={}", w.a("/sensors/temp"))),
        vec![w.a("/sensors/temp")]
    );
    assert_eq!(
        w.res(&format!("href={}", w.a("/sensors*"))),
        sorted(vec![w.a("/sensors/temp"), w.a("/sensors/light")])
    );
}

#[test]
fn resource_lookup_cross_matches_endpoint_attributes() {
    let w = World::new();
    let node1 = sorted(vec![
        w.a("/sensors/temp"),
        w.a("/sensors/light"),
        w.a("/act/fan"),
        "http://www.example.com/sensors/temp".to_string(),
    ]);
    assert_eq!(w.res("ep=node1"), node1);
    assert_eq!(w.res("et=oic.d.sensor"), node1);
    assert_eq!(w.res("d=floor2"), sorted(vec![w.b("/t"), w.b("/lamp")]));
    assert_eq!(w.res("ep=node1&rt=light*"), vec![w.a("/sensors/light")]);
    assert_eq!(w.res(&format!("base={}", w.c(""))), vec![w.c("/s")]);
}

#[test]
fn endpoint_lookup_cross_matches_resource_attributes() {
    let w = World::new();
    assert_eq!(w.eps("rt=light"), vec!["node2"]);
    assert_eq!(w.eps("rt=light*"), vec!["node1", "node2"]);
    assert_eq!(w.eps("rt=temperature"), vec!["node1", "node3"]);
    assert_eq!(w.eps("if=core.a&d=floor2"), vec!["node2"]);
    assert!(w.eps("rt=light&ep=node3").is_empty());
}

#[test]
fn endpoint_lookup_by_endpoint_attributes() {
    let w = World::new();
    assert_eq!(w.eps(""), vec!["node1", "node2", "node3"]);
    assert_eq!(w.eps("ep=node*"), vec!["node1", "node2", "node3"]);
    assert_eq!(w.eps("ep=node2"), vec!["node2"]);
    assert_eq!(w.eps("et=oic.d.sensor"), vec!["node1"]);
    assert_eq!(w.eps("d=floor2"), vec!["node2"]);
    assert_eq!(w.eps(&format!("base={}", w.b(""))), vec!["node2"]);
    let l = lookup(&w.a, "/rd-lookup/ep?d=floor2");
    assert_eq!(l[0].get("d"), Some("floor2"));
}

#[test]
fn endpoint_lookup_by_href_of_registration_resource() {
    // RFC 9176 §6.2: endpoint hrefs are path-absolute; the RD SHOULD recognise them.
    let w = World::new();
    assert_eq!(w.eps(&format!("href={}", w.loc1)), vec!["node1"]);
}

#[test]
fn endpoint_lookup_never_reports_lt() {
    let w = World::new();
    register(&w.a, "ep=withlt&lt=500", "</z>");
    for l in lookup(&w.a, "/rd-lookup/ep") {
        assert!(!l.has("lt"), "lt leaked into endpoint lookup: {l:?}");
        assert!(
            l.get("rt")
                .unwrap_or("")
                .split(' ')
                .any(|v| v == "core.rd-ep"),
            "{l:?}"
        );
        assert!(l.has("base") && l.has("ep"), "{l:?}");
    }
    let _ = &w.gw;
}

// ---- paging (RFC 9176 §6.2) --------------------------------------------------------------

fn pager() -> (Gateway, Peer, Vec<String>) {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(
        &p,
        "ep=pager",
        "</p/0>;rt=\"page\",</p/1>;rt=\"page\",</p/2>;rt=\"page\",</p/3>;rt=\"page\",</p/4>;rt=\"page\"",
    );
    register(&p, "ep=other", "</q>;rt=\"nopage\"");
    let full: Vec<String> = lookup(&p, "/rd-lookup/res?rt=page")
        .into_iter()
        .map(|l| l.target)
        .collect();
    assert_eq!(full.len(), 5, "{full:?}");
    (gw, p, full)
}

fn targets(p: &Peer, uri: &str) -> Vec<String> {
    lookup(p, uri).into_iter().map(|l| l.target).collect()
}

#[test]
fn page_1_count_2_of_5_matches_returns_the_third_and_fourth() {
    let (_gw, p, full) = pager();
    assert_eq!(
        targets(&p, "/rd-lookup/res?rt=page&page=1&count=2"),
        full[2..4]
    );
}

#[test]
fn paging_first_last_and_past_the_end() {
    let (_gw, p, full) = pager();
    assert_eq!(
        targets(&p, "/rd-lookup/res?rt=page&page=0&count=2"),
        full[0..2]
    );
    assert_eq!(
        targets(&p, "/rd-lookup/res?rt=page&page=2&count=2"),
        full[4..5]
    );
    let past = p.get("/rd-lookup/res?rt=page&page=3&count=2");
    assert_eq!(past.code, "2.05");
    assert!(past.payload.is_empty(), "{}", past.text());
    assert_eq!(targets(&p, "/rd-lookup/res?rt=page&count=3"), full[0..3]);
    assert_eq!(targets(&p, "/rd-lookup/res?rt=page&count=10"), full);
}

#[test]
fn paging_applies_to_endpoint_lookup() {
    let (_gw, p, _) = pager();
    let all: Vec<String> = targets(&p, "/rd-lookup/ep");
    assert_eq!(all.len(), 2);
    assert_eq!(targets(&p, "/rd-lookup/ep?page=1&count=1"), all[1..2]);
    assert_eq!(targets(&p, "/rd-lookup/ep?count=1"), all[0..1]);
}

// ---- Observe (RFC 7641 on lookups, RFC 9176 §6.2) ----------------------------------------

#[test]
fn observed_endpoint_lookup_notifies_on_new_and_removed_endpoint() {
    let gw = Gateway::start();
    let watcher = Peer::new(gw.addr());
    let (token, first) = watcher.observe("/rd-lookup/ep?ep=obs*");
    assert_eq!(first.code, "2.05");
    assert!(first.observe.is_some(), "the lookup is not observable");
    assert!(first.payload.is_empty());

    let dev = Peer::new(gw.addr());
    let loc = register(&dev, "ep=obs1", "</a>;rt=\"x\"");
    let n = watcher
        .wait_notification(&token, Duration::from_secs(5))
        .expect("no notification after a matching registration");
    assert_eq!(n.code, "2.05");
    assert!(n.observe.is_some());
    let links = n.links();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].get("ep"), Some("obs1"));

    assert_eq!(dev.delete(&loc).code, "2.02");
    let n = watcher
        .wait_notification(&token, Duration::from_secs(5))
        .expect("no notification after removal");
    assert_eq!(n.code, "2.05");
    assert!(
        n.payload.is_empty(),
        "the empty set is notified too: {}",
        n.text()
    );
}

#[test]
fn observed_resource_lookup_notifies_when_a_matching_link_changes() {
    let gw = Gateway::start();
    let watcher = Peer::new(gw.addr());
    let (token, first) = watcher.observe("/rd-lookup/res?rt=watched");
    assert_eq!(first.code, "2.05");
    assert!(first.observe.is_some());

    let dev = Peer::new(gw.addr());
    register(&dev, "ep=w1", "</a>;rt=\"watched\"");
    let n = watcher
        .wait_notification(&token, Duration::from_secs(5))
        .expect("no notification after a matching registration");
    assert_eq!(n.links().len(), 1);

    // Same set, changed content (RFC 9176 §6.2: "or their content"). Re-registration is
    // atomic (§4), so no notification may show the link missing on the way.
    register(&dev, "ep=w1", "</a>;rt=\"watched\";title=\"v2\"");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let n = watcher
            .wait_notification(&token, left)
            .expect("no notification showing the content change");
        let links = n.links();
        assert_eq!(
            links.len(),
            1,
            "non-atomic intermediate state notified: {links:?}"
        );
        if links[0].get("title") == Some("v2") {
            break;
        }
    }
}

// ---- a large result over Block2 (RFC 7959) -----------------------------------------------

#[test]
fn lookup_of_200_endpoints_is_complete_over_block2() {
    const N: usize = 200;
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    for i in 0..N {
        register(
            &p,
            &format!("ep=bulk-{i:03}"),
            &format!(
                "</s/{i}/a>;rt=\"bulk\";title=\"padding so that the result spans many blocks\",\
                 </s/{i}/b>;rt=\"bulk\""
            ),
        );
    }
    let base = p.derived_base();
    let r = p.get_all_blocks("/rd-lookup/res?rt=bulk", None);
    assert_eq!(r.code, "2.05");
    assert!(r.payload.len() > 1024, "expected a multi-block body");
    let links = r.links();
    let got: Vec<String> = links.iter().map(|l| l.target.clone()).collect();
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "duplicate links across blocks");
    let want: BTreeSet<String> = (0..N)
        .flat_map(|i| [format!("{base}/s/{i}/a"), format!("{base}/s/{i}/b")])
        .collect();
    assert_eq!(unique, want, "missing or foreign links");

    let eps = p.get_all_blocks("/rd-lookup/ep?ep=bulk-*", None);
    assert_eq!(eps.code, "2.05");
    let names: BTreeSet<String> = eps
        .links()
        .iter()
        .map(|l| l.get("ep").unwrap_or("").to_string())
        .collect();
    assert_eq!(names.len(), N);

    // Explicit small blocks from the first one on (RFC 7959 §2.4 early negotiation).
    let first = p.request(&Req::get("/rd-lookup/res?rt=bulk").block2(0, 2));
    assert_eq!(first.code, "2.05");
    let b = first.block2.expect("Block2 missing in a block-wise answer");
    assert_eq!(b.num, 0);
    assert!(b.more);
    assert!(b.szx <= 2, "server used bigger blocks than asked: {b:?}");
    assert_eq!(first.payload.len(), b.size());
}

// ---- IPv6 ------------------------------------------------------------------------------

#[test]
fn registration_and_lookup_over_ipv6_loopback() {
    if !common::skip::require_ipv6_loopback() {
        return;
    }
    let gw = Gateway::start_with(GatewayOptions {
        listen: vec!["127.0.0.1:0".into(), "[::1]:0".into()],
        ..Default::default()
    });
    let v6 = *gw
        .rd_addrs
        .iter()
        .find(|a| a.is_ipv6())
        .expect("no IPv6 listener reported");
    let v4 = *gw
        .rd_addrs
        .iter()
        .find(|a| a.is_ipv4())
        .expect("no IPv4 listener");
    let p6 = Peer::new(v6);
    let loc = register(&p6, "ep=v6node", "</sensors/temp>;rt=\"temperature\"");
    let base = p6.derived_base();
    assert!(base.starts_with("coap://[::1]:"), "{base}");
    let l = ep_link(&p6, "v6node").expect("listed over v6");
    assert_eq!(l.get("base"), Some(base.as_str()));
    assert!(l.target.ends_with(&loc));
    assert_eq!(
        res_targets(&p6, "/rd-lookup/res?ep=v6node"),
        vec![format!("{base}/sensors/temp")]
    );
    // The same directory answers over IPv4.
    let p4 = Peer::new(v4);
    assert_eq!(
        res_targets(&p4, "/rd-lookup/res?rt=temperature"),
        vec![format!("{base}/sensors/temp")]
    );
    register(&p4, "ep=v4node", "</x>");
    assert!(ep_link(&p6, "v4node").is_some());
    assert_eq!(p6.request(&Req::post(&loc)).code, "2.04");
    assert_eq!(p6.delete(&loc).code, "2.02");
}

// ---- groups as registrations (RFC 9176 App. A) -----------------------------------------

#[test]
fn group_registration_with_multicast_base_is_found_by_et_core_rd_group() {
    let gw = Gateway::start();
    let ct = Peer::new(gw.addr());
    register(&ct, "ep=lamp1", "</light>;rt=\"light\"");
    // A commissioning tool registers the group on the members' behalf.
    register(
        &ct,
        "ep=grp_R2-4-015&et=core.rd-group&base=coap://[ff35:30:2001:db8::1]",
        "</light>;rt=\"light\";if=\"core.a\"",
    );
    let groups = lookup(&ct, "/rd-lookup/ep?et=core.rd-group");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].get("ep"), Some("grp_R2-4-015"));
    assert_eq!(groups[0].get("base"), Some("coap://[ff35:30:2001:db8::1]"));
    assert_eq!(
        res_targets(&ct, "/rd-lookup/res?et=core.rd-group"),
        vec!["coap://[ff35:30:2001:db8::1]/light".to_string()]
    );
}

/// Cross-matching (RFC 9176 §6.2) at the level the inverted index could miss: an *endpoint*
/// attribute named like a link attribute (`rt`, `if`) and a *link* parameter named like an
/// endpoint attribute (`et`, `d`). Each must still be found, by both lookups.
#[test]
fn indexed_names_match_at_both_levels() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(
        &p,
        "ep=ep-rt&rt=gateway-type&if=bridge",
        "</a>;rt=\"other\"",
    );
    register(&p, "ep=link-et", "</b>;et=\"oddly.placed\";d=\"inner\"");
    register(&p, "ep=plain", "</c>;rt=\"other\"");

    let eps = |uri: &str| -> BTreeSet<String> {
        lookup(&p, uri)
            .iter()
            .filter_map(|l| l.get("ep").map(str::to_string))
            .collect()
    };
    assert_eq!(
        eps("/rd-lookup/ep?rt=gateway-type"),
        ["ep-rt".to_string()].into()
    );
    assert_eq!(
        eps("/rd-lookup/ep?rt=gateway*&if=bridge"),
        ["ep-rt".to_string()].into()
    );
    assert_eq!(
        eps("/rd-lookup/ep?et=oddly.placed"),
        ["link-et".to_string()].into()
    );
    assert_eq!(eps("/rd-lookup/ep?d=inner"), ["link-et".to_string()].into());
    let base = p.derived_base();
    assert_eq!(
        res_targets(&p, "/rd-lookup/res?rt=gateway-type"),
        vec![format!("{base}/a")]
    );
    assert_eq!(
        res_targets(&p, "/rd-lookup/res?et=oddly*"),
        vec![format!("{base}/b")]
    );
}

/// RFC 9176 §6.2 notifies observers when *their* result changes: a registration that does not
/// match an observed lookup must not produce a notification, one that changes it must.
#[test]
fn lookup_observers_are_notified_only_when_their_result_changes() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let watched = register(&p, "ep=watched", "</a>");
    let observer = Peer::new(gw.addr());
    let (token, first) = observer.observe("/rd-lookup/ep?ep=watched");
    assert_eq!(first.code, "2.05");
    assert!(first.etag.is_some(), "lookups carry an ETag");

    register(&p, "ep=unrelated", "</b>");
    assert!(
        observer
            .wait_notification(&token, Duration::from_millis(800))
            .is_none(),
        "an unrelated registration left the observed result unchanged"
    );

    assert_eq!(
        p.request(&Req::post(&format!("{watched}?lt=77&x=1"))).code,
        "2.04"
    );
    let n = observer
        .wait_notification(&token, Duration::from_secs(5))
        .expect("a change of the watched endpoint is notified");
    assert!(n.text().contains("x=1"), "{}", n.text());
    assert_ne!(n.etag, first.etag);
}

/// RFC 7252 §5.10.6: a client presenting the current ETag gets 2.03 Valid without a body; after a
/// change it gets the new representation.
#[test]
fn lookup_revalidation_with_etag_answers_2_03() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=v1", "</a>");
    let full = p.request(&Req::get("/rd-lookup/ep"));
    let etag = full.etag.clone().expect("ETag");
    let again = p.request(&Req::get("/rd-lookup/ep").etag(etag.clone()));
    assert_eq!(again.code, "2.03");
    assert!(again.payload.is_empty());
    register(&p, "ep=v2", "</a>");
    let changed = p.request(&Req::get("/rd-lookup/ep").etag(etag));
    assert_eq!(changed.code, "2.05");
    assert!(changed.text().contains("v2"));
}
