//! RD discovery through `/.well-known/core` (RFC 9176 §4.3, §9.1; RFC 6690 §4.1 filtering;
//! checklist R6, R7).

mod common;

use common::coap_peer::*;
use common::Gateway;

fn rts(l: &Link) -> Vec<String> {
    l.get("rt")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn find<'a>(links: &'a [Link], target: &str) -> Option<&'a Link> {
    links.iter().find(|l| l.target == target)
}

#[test]
fn well_known_core_lists_directory_and_both_lookup_resources() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let r = p.get_all_blocks("/.well-known/core", None);
    assert_eq!(r.code, "2.05");
    assert_eq!(r.content_format, Some(CT_LINK_FORMAT));
    let links = r.links();
    let rd = find(&links, "/rd").unwrap_or_else(|| panic!("/rd missing: {links:?}"));
    assert!(rts(rd).contains(&"core.rd".to_string()), "{rd:?}");
    let ct = rd.get("ct").unwrap_or("");
    assert!(
        ct.split(' ').any(|c| c == "40"),
        "/rd should advertise ct=40 (RFC 9176 §4.3): {rd:?}"
    );
    let ep = find(&links, "/rd-lookup/ep").expect("/rd-lookup/ep missing");
    assert!(rts(ep).contains(&"core.rd-lookup-ep".to_string()), "{ep:?}");
    let res = find(&links, "/rd-lookup/res").expect("/rd-lookup/res missing");
    assert!(
        rts(res).contains(&"core.rd-lookup-res".to_string()),
        "{res:?}"
    );
}

#[test]
fn well_known_core_rt_core_rd_star_returns_only_rd_resources() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let links = lookup(&p, "/.well-known/core?rt=core.rd*");
    for t in ["/rd", "/rd-lookup/ep", "/rd-lookup/res"] {
        assert!(find(&links, t).is_some(), "{t} missing: {links:?}");
    }
    for l in &links {
        assert!(
            rts(l).iter().any(|v| v.starts_with("core.rd")),
            "filter let through {l:?}"
        );
    }
}

#[test]
fn well_known_core_rt_core_rd_lookup_star_returns_both_lookups_not_directory() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let links = lookup(&p, "/.well-known/core?rt=core.rd-lookup*");
    assert!(find(&links, "/rd-lookup/ep").is_some(), "{links:?}");
    assert!(find(&links, "/rd-lookup/res").is_some(), "{links:?}");
    assert!(find(&links, "/rd").is_none(), "{links:?}");
    for l in &links {
        assert!(
            rts(l).iter().any(|v| v.starts_with("core.rd-lookup")),
            "{l:?}"
        );
    }
}

#[test]
fn well_known_core_exact_rt_filters() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let res = lookup(&p, "/.well-known/core?rt=core.rd-lookup-res");
    assert_eq!(
        res.iter().map(|l| l.target.as_str()).collect::<Vec<_>>(),
        vec!["/rd-lookup/res"],
        "{res:?}"
    );
    let ep = lookup(&p, "/.well-known/core?rt=core.rd-lookup-ep");
    assert_eq!(
        ep.iter().map(|l| l.target.as_str()).collect::<Vec<_>>(),
        vec!["/rd-lookup/ep"],
        "{ep:?}"
    );
    let rd = lookup(&p, "/.well-known/core?rt=core.rd");
    assert_eq!(
        rd.iter().map(|l| l.target.as_str()).collect::<Vec<_>>(),
        vec!["/rd"],
        "{rd:?}"
    );
}

#[test]
fn well_known_core_filters_on_other_attributes_too() {
    // RFC 6690 §4.1: any attribute can be a filter, e.g. ct.
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let links = lookup(&p, "/.well-known/core?ct=40");
    assert!(find(&links, "/rd").is_some(), "{links:?}");
}

#[test]
fn well_known_core_does_not_list_registered_resources() {
    // Registered links belong to the lookup interface, not to the RD's own discovery.
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=node1", "</sensors/temp>;rt=\"temperature\"");
    let links = lookup(&p, "/.well-known/core");
    assert!(
        links.iter().all(|l| l.get("rt") != Some("temperature")),
        "{links:?}"
    );
}
