//! Registration, update, removal, expiry and simple registration against the real
//! `coap-gateway` binary over UDP on loopback (RFC 9176 §5, §5.1, §5.3; checklist R8–R21).
//!
//! Driven by the test's own CoAP client (`common::coap_peer`) and, for register + lookup +
//! update + delete, by the independent `coap` crate.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::coap_peer::*;
use common::Gateway;

/// How long an expiry may take to show before it counts as missing: a defect bound for a loaded
/// 2-core box (the lifetimes here are a few seconds), not a timing claim.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(30);

/// Poll the endpoint lookup `/rd-lookup/ep?ep=PATTERN` until `done` holds for its answer;
/// fails the test after [`EXPIRY_DEADLINE`]. Returns the `ep` names of that answer. One lookup
/// is one snapshot, so names checked together in one answer were true at the same moment.
fn poll_eps(p: &Peer, pattern: &str, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let eps = |links: &[Link]| -> Vec<String> {
        links
            .iter()
            .filter_map(|l| l.get("ep").map(str::to_string))
            .collect()
    };
    let last = lookup_until(
        p,
        &format!("/rd-lookup/ep?ep={pattern}"),
        EXPIRY_DEADLINE,
        |links| done(&eps(links)),
    );
    let last = eps(&last);
    assert!(
        done(&last),
        "{what}: not within {EXPIRY_DEADLINE:?}, listed {last:?}"
    );
    last
}

fn has(eps: &[String], ep: &str) -> bool {
    eps.iter().any(|e| e == ep)
}

/// The registration example of RFC 9176 §5 (a link with an anchor and one without).
const RFC_EXAMPLE_LINKS: &str = "</sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\
<http://www.example.com/sensors/temp>;anchor=\"/sensors/temp\";rel=\"describedby\"";

#[test]
fn registration_answers_2_01_with_location_path_and_links_are_resolved_against_source() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let resp = p.post_links("/rd?ep=node1", RFC_EXAMPLE_LINKS);
    assert_eq!(resp.code, "2.01", "{}", resp.text());
    assert!(!resp.location_path.is_empty(), "Location-Path is a MUST");
    assert!(resp.location_query.is_empty(), "no Location-Query allowed");
    let base = p.derived_base();
    let got = lookup(&p, "/rd-lookup/res?ep=node1");
    let want = vec![
        link(
            &format!("{base}/sensors/temp"),
            &[("rt", "temperature-c"), ("if", "sensor")],
        ),
        link(
            "http://www.example.com/sensors/temp",
            &[
                ("anchor", &format!("{base}/sensors/temp")),
                ("rel", "describedby"),
            ],
        ),
    ];
    assert_eq!(link_set(&got), link_set(&want), "got {got:?}");
}

#[test]
fn reregistration_same_ep_and_sector_returns_same_location_and_replaces_links() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc1 = register(&p, "ep=node1", "</a>;rt=\"old\"");
    let loc2 = register(&p, "ep=node1", "</b>;rt=\"new\"");
    assert_eq!(
        loc1, loc2,
        "RFC 9176 §5: re-registration must keep the location"
    );
    let base = p.derived_base();
    assert_eq!(
        res_targets(&p, "/rd-lookup/res?ep=node1"),
        vec![format!("{base}/b")],
        "links are replaced, not merged"
    );
    assert_eq!(lookup(&p, "/rd-lookup/ep?ep=node1").len(), 1);
    assert!(lookup(&p, "/rd-lookup/res?rt=old").is_empty());
}

#[test]
fn reregistration_from_another_socket_keeps_location() {
    let gw = Gateway::start();
    let a = Peer::new(gw.addr());
    let b = Peer::new(gw.addr());
    let loc1 = register(&a, "ep=mover", "</a>");
    let loc2 = register(&b, "ep=mover", "</a>");
    assert_eq!(loc1, loc2);
    let l = ep_link(&a, "mover").expect("listed");
    assert_eq!(l.get("base"), Some(b.derived_base().as_str()));
}

#[test]
fn same_ep_in_different_sector_gets_different_location() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc1 = register(&p, "ep=node1", "</a>");
    let loc2 = register(&p, "ep=node1&d=sector2", "</a>");
    assert_ne!(loc1, loc2);
    let both = lookup(&p, "/rd-lookup/ep?ep=node1");
    assert_eq!(both.len(), 2, "{both:?}");
    let in_sector = lookup(&p, "/rd-lookup/ep?d=sector2");
    assert_eq!(in_sector.len(), 1, "{in_sector:?}");
    assert_eq!(in_sector[0].get("d"), Some("sector2"));
    assert!(in_sector[0].target.ends_with(&loc2));
}

#[test]
fn endpoint_lookup_link_points_to_registration_resource_with_ep_base_rt_and_no_lt() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=node1&lt=120", "</a>");
    let l = ep_link(&p, "node1").expect("node1 listed");
    assert!(
        l.target == loc || l.target.ends_with(&loc),
        "target {} is not the registration resource {loc}",
        l.target
    );
    assert_eq!(l.get("ep"), Some("node1"));
    assert_eq!(l.get("base"), Some(p.derived_base().as_str()));
    assert!(
        l.get("rt")
            .unwrap_or("")
            .split(' ')
            .any(|v| v == "core.rd-ep"),
        "rt=core.rd-ep missing: {l:?}"
    );
    assert!(!l.has("lt"), "RFC 9176 §6.4: lt is not reported: {l:?}");
    assert!(!l.has("d"), "no sector was given: {l:?}");
}

#[test]
fn ep_of_63_bytes_is_accepted_also_when_multibyte() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let ascii = "e".repeat(63);
    register(&p, &format!("ep={ascii}"), "</a>");
    assert!(ep_link(&p, &ascii).is_some());
    // 21 × '€' (3 bytes each) = 63 bytes, 21 characters.
    let euro = "€".repeat(21);
    register(&p, &format!("ep={euro}"), "</b>");
    let l = ep_link(&p, &euro).expect("multibyte ep listed");
    assert_eq!(l.get("ep"), Some(euro.as_str()));
}

#[test]
fn lt_bounds_1_and_4294967295_are_accepted() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=max&lt=4294967295", "</a>");
    register(&p, "ep=min&lt=1", "</a>");
    assert!(ep_link(&p, "max").is_some());
}

#[test]
fn unknown_query_parameters_are_stored_as_endpoint_attributes() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=node1&et=oic.d.sensor&foo=bar", "</a>");
    let l = ep_link(&p, "node1").expect("listed");
    assert_eq!(l.get("et"), Some("oic.d.sensor"));
    assert_eq!(l.get("foo"), Some("bar"));
    assert_eq!(lookup(&p, "/rd-lookup/ep?foo=bar").len(), 1);
}

#[test]
fn repeated_et_is_kept_as_separate_values() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=node1&et=oic.d.sensor&et=oic.d.light", "</a>");
    let l = ep_link(&p, "node1").expect("listed");
    let mut ets = l.values("et");
    ets.sort();
    assert_eq!(ets, vec!["oic.d.light", "oic.d.sensor"], "{l:?}");
    assert_eq!(lookup(&p, "/rd-lookup/ep?et=oic.d.light").len(), 1);
    assert_eq!(lookup(&p, "/rd-lookup/ep?et=oic.d.sensor").len(), 1);
}

#[test]
fn explicit_base_is_used_for_resolution_and_shown_in_ep_lookup() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=ct1&base=coap://127.0.0.1:9999", "</s/t>;rt=\"x\"");
    let l = ep_link(&p, "ct1").expect("listed");
    assert_eq!(l.get("base"), Some("coap://127.0.0.1:9999"));
    assert_eq!(
        res_targets(&p, "/rd-lookup/res?ep=ct1"),
        vec!["coap://127.0.0.1:9999/s/t".to_string()]
    );
}

#[test]
fn absolute_targets_and_anchors_are_returned_unchanged() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(
        &p,
        "ep=abs",
        "<coap://[2001:db8::1]:61616/x>;rt=\"a\",<coap://[2001:db8::2]/y>;anchor=\"coap://[2001:db8::2]/z\"",
    );
    let got = lookup(&p, "/rd-lookup/res?ep=abs");
    let want = vec![
        link("coap://[2001:db8::1]:61616/x", &[("rt", "a")]),
        link(
            "coap://[2001:db8::2]/y",
            &[("anchor", "coap://[2001:db8::2]/z")],
        ),
    ];
    assert_eq!(link_set(&got), link_set(&want), "{got:?}");
}

/// RFC 9176 App. C: when the anchor is a full URI the target must be one too; otherwise it is
/// ambiguous whether `</y>` means the registrant's `/y` or the anchor host's `/y`.
#[test]
fn path_absolute_target_with_full_uri_anchor_is_refused() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let r = p.request(
        &Req::post("/rd?ep=mixed")
            .ct(40)
            .links("</y>;anchor=\"coap://[2001:db8::2]/z\""),
    );
    assert_eq!(r.code, "4.00", "{r:?}");
    assert!(lookup(&p, "/rd-lookup/ep?ep=mixed").is_empty());
}

#[test]
fn quoted_values_with_commas_and_semicolons_survive_round_trip() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(
        &p,
        "ep=q",
        "</a>;title=\"x, y; z\";rt=\"tag:example.org,2020:temperature\";obs",
    );
    let got = lookup(&p, "/rd-lookup/res?ep=q");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].get("title"), Some("x, y; z"));
    assert_eq!(got[0].get("rt"), Some("tag:example.org,2020:temperature"));
    assert!(got[0].has("obs"), "valueless obs lost: {got:?}");
}

// ----------------------------------------------------------------------------------------
// Update (RFC 9176 §5.3.1)
// ----------------------------------------------------------------------------------------

#[test]
fn update_empty_post_answers_2_04_and_keeps_links() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=node1", "</a>;rt=\"x\"");
    let r = p.request(&Req::post(&loc));
    assert_eq!(r.code, "2.04", "{}", r.text());
    assert_eq!(res_targets(&p, "/rd-lookup/res?ep=node1").len(), 1);
}

#[test]
fn update_from_new_source_moves_derived_base() {
    let gw = Gateway::start();
    let a = Peer::new(gw.addr());
    let loc = register(&a, "ep=nat", "</a>");
    let b = Peer::new(gw.addr());
    assert_eq!(b.request(&Req::post(&loc)).code, "2.04");
    let l = ep_link(&a, "nat").expect("listed");
    assert_eq!(l.get("base"), Some(b.derived_base().as_str()));
    assert_eq!(
        res_targets(&a, "/rd-lookup/res?ep=nat"),
        vec![format!("{}/a", b.derived_base())],
        "a base change re-resolves the links (RFC 9176 §5.3.1)"
    );
}

#[test]
fn update_from_new_source_keeps_explicit_base() {
    let gw = Gateway::start();
    let a = Peer::new(gw.addr());
    let loc = register(&a, "ep=fixed&base=coap://127.0.0.1:9999", "</a>");
    let b = Peer::new(gw.addr());
    assert_eq!(b.request(&Req::post(&loc)).code, "2.04");
    let l = ep_link(&a, "fixed").expect("listed");
    assert_eq!(l.get("base"), Some("coap://127.0.0.1:9999"));
}

#[test]
fn update_with_base_changes_base() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=rebased", "</a>");
    assert_eq!(
        p.request(&Req::post(&format!("{loc}?base=coap://127.0.0.1:7777")))
            .code,
        "2.04"
    );
    assert_eq!(
        res_targets(&p, "/rd-lookup/res?ep=rebased"),
        vec!["coap://127.0.0.1:7777/a".to_string()]
    );
}

#[test]
fn update_extra_attributes_override_same_key_and_add_new_ones() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=attrs&foo=1&keep=yes", "</a>");
    assert_eq!(
        p.request(&Req::post(&format!("{loc}?foo=2&bar=3"))).code,
        "2.04"
    );
    let l = ep_link(&p, "attrs").expect("listed");
    assert_eq!(l.values("foo"), vec!["2"], "{l:?}");
    assert_eq!(l.get("bar"), Some("3"));
    assert_eq!(
        l.get("keep"),
        Some("yes"),
        "extra attrs cannot be removed by an update"
    );
}

// ----------------------------------------------------------------------------------------
// Removal (RFC 9176 §5.3.2)
// ----------------------------------------------------------------------------------------

#[test]
fn delete_answers_2_02_then_lookups_are_empty_and_second_delete_is_4_04() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=gone", "</a>;rt=\"x\"");
    let keep = register(&p, "ep=stays", "</b>;rt=\"x\"");
    assert_eq!(p.delete(&loc).code, "2.02");
    assert!(ep_link(&p, "gone").is_none());
    assert!(lookup(&p, "/rd-lookup/res?ep=gone").is_empty());
    assert_eq!(
        lookup(&p, "/rd-lookup/res?rt=x").len(),
        1,
        "the other one stays"
    );
    assert_eq!(p.delete(&loc).code, "4.04");
    assert_eq!(
        p.request(&Req::post(&loc)).code,
        "4.04",
        "update after delete"
    );
    assert_ne!(keep, loc);
}

#[test]
fn reregistration_after_delete_works() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=again", "</a>");
    assert_eq!(p.delete(&loc).code, "2.02");
    register(&p, "ep=again", "</b>");
    assert_eq!(
        res_targets(&p, "/rd-lookup/res?ep=again"),
        vec![format!("{}/b", p.derived_base())]
    );
}

// ----------------------------------------------------------------------------------------
// Lifetime and expiry (RFC 9176 §5, §5.3)
// ----------------------------------------------------------------------------------------

#[test]
fn registration_expires_after_lt_while_default_lt_one_stays() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    register(&p, "ep=short&lt=4", "</a>;rt=\"short\"");
    // Checked at once, far inside its 4 s: it was there before it expired.
    assert!(ep_link(&p, "short").is_some());
    register(&p, "ep=default", "</a>;rt=\"long\"");
    register(&p, "ep=explicit&lt=60", "</a>;rt=\"long\"");
    poll_eps(&p, "short", "lt=4 expires", |eps| !has(eps, "short"));
    assert!(lookup(&p, "/rd-lookup/res?rt=short").is_empty());
    assert!(ep_link(&p, "default").is_some(), "default lt is 90000 s");
    assert!(ep_link(&p, "explicit").is_some());
}

#[test]
fn update_within_grace_period_revives_expired_registration_at_same_location() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=late&lt=3", "</a>;rt=\"late\"");
    assert!(ep_link(&p, "late").is_some());
    poll_eps(&p, "late", "lt=3 expires", |eps| !has(eps, "late"));
    assert!(lookup(&p, "/rd-lookup/res?rt=late").is_empty());
    // The grace (default 3600 s) is far longer than the poll above may take.
    let r = p.request(&Req::post(&format!("{loc}?lt=60")));
    assert_eq!(r.code, "2.04", "late refresh must revive (RFC 9176 §5.3)");
    let l = ep_link(&p, "late").expect("revived");
    assert!(l.target.ends_with(&loc));
    assert_eq!(
        lookup(&p, "/rd-lookup/res?rt=late").len(),
        1,
        "links came back"
    );
    // Re-registration after revival keeps the location too.
    assert_eq!(register(&p, "ep=late", "</a>;rt=\"late\""), loc);
}

#[test]
fn update_with_new_lt_extends_the_registration() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let loc = register(&p, "ep=ext&lt=3", "</a>");
    assert_eq!(p.request(&Req::post(&format!("{loc}?lt=60"))).code, "2.04");
    // A control with ext's first lifetime, registered after ext: once it has expired, so
    // would ext have without the update.
    register(&p, "ep=extctl&lt=3", "</a>");
    let eps = poll_eps(&p, "ext*", "the control expires", |eps| !has(eps, "extctl"));
    assert!(has(&eps, "ext"), "the update's lt=60 must apply: {eps:?}");
}

#[test]
fn update_without_lt_keeps_the_last_lifetime() {
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    // A control registered with keeplt and never refreshed: it expires when keeplt would have
    // without the refresh.
    register(&p, "ep=keepctl&lt=6", "</a>");
    let loc = register(&p, "ep=keeplt&lt=6", "</a>");
    // Let time pass before the refresh: the refreshed keeplt outlives the control by this
    // much, which is the slack the lookup polling below has (not a synchronisation).
    std::thread::sleep(Duration::from_secs(3));
    // Refresh without lt: the timeout resets to the last lt (6 s), not to the default.
    assert_eq!(p.request(&Req::post(&loc)).code, "2.04");
    let eps = poll_eps(&p, "keep*", "the control expires", |eps| {
        !has(eps, "keepctl")
    });
    assert!(has(&eps, "keeplt"), "the refresh reset the timer: {eps:?}");
    poll_eps(
        &p,
        "keep*",
        "update without lt must keep lt=6 (RFC 9176 §5.3.1), not fall back to 90000",
        |eps| !has(eps, "keeplt"),
    );
}

// ----------------------------------------------------------------------------------------
// Simple registration (RFC 9176 §5.1)
// ----------------------------------------------------------------------------------------

#[test]
fn simple_registration_fetches_well_known_core_before_answering_2_04() {
    let gw = Gateway::start();
    let out = simple_register(
        gw.addr(),
        "/.well-known/rd?ep=simple1&lt=600",
        Some("</sensors/temp>;rt=\"temperature\";if=\"sensor\",</sensors/light>;rt=\"light\""),
        Duration::from_secs(8),
    );
    let resp = out
        .response
        .as_ref()
        .expect("no answer to simple registration");
    assert_eq!(resp.code, "2.04", "{out:?}");
    assert!(out.wkc_gets >= 1, "the RD never fetched /.well-known/core");
    assert!(
        out.get_before_response,
        "RFC 9176 §5.1: the RD GETs /.well-known/core before answering"
    );
    assert!(
        out.accepts
            .iter()
            .all(|a| a.is_none() || *a == Some(CT_LINK_FORMAT)),
        "{:?}",
        out.accepts
    );
    let p = Peer::new(gw.addr());
    let base = base_of(out.device);
    let got = lookup(&p, "/rd-lookup/res?ep=simple1");
    let want = vec![
        link(
            &format!("{base}/sensors/temp"),
            &[("rt", "temperature"), ("if", "sensor")],
        ),
        link(&format!("{base}/sensors/light"), &[("rt", "light")]),
    ];
    assert_eq!(link_set(&got), link_set(&want), "{got:?}");
    let l = ep_link(&p, "simple1").expect("simple1 in ep lookup");
    assert_eq!(l.get("base"), Some(base.as_str()));
}

#[test]
fn simple_registration_with_base_is_rejected_4_00() {
    let gw = Gateway::start();
    let out = simple_register(
        gw.addr(),
        "/.well-known/rd?ep=simple2&base=coap://127.0.0.1:9999",
        Some("</x>"),
        Duration::from_secs(5),
    );
    let resp = out.response.as_ref().expect("no answer");
    assert_eq!(resp.code, "4.00", "{out:?}");
    let p = Peer::new(gw.addr());
    assert!(ep_link(&p, "simple2").is_none());
}

#[test]
fn simple_registration_fails_and_registers_nothing_when_device_discovery_fails() {
    // RFC 9176 §5.1 leaves the code open; the checklist picks 5.02 (aiocoap: 4.00). Either
    // way it is an error, and nothing is registered.
    let gw = Gateway::start();
    let out = simple_register(
        gw.addr(),
        "/.well-known/rd?ep=simple3",
        None,
        Duration::from_secs(8),
    );
    let resp = out.response.as_ref().expect("no answer");
    assert!(
        resp.code.starts_with("4.") || resp.code.starts_with("5."),
        "{out:?}"
    );
    assert!(out.wkc_gets >= 1, "{out:?}");
    let p = Peer::new(gw.addr());
    assert!(ep_link(&p, "simple3").is_none());
}

#[test]
fn simple_registration_expires_after_its_lifetime() {
    let gw = Gateway::start();
    let out = simple_register(
        gw.addr(),
        "/.well-known/rd?ep=simple4&lt=4",
        Some("</x>;rt=\"short\""),
        Duration::from_secs(5),
    );
    assert_eq!(out.response.as_ref().map(|r| r.code.as_str()), Some("2.04"));
    let p = Peer::new(gw.addr());
    assert!(ep_link(&p, "simple4").is_some());
    poll_eps(
        &p,
        "simple4",
        "RFC 9176 §5.1: MUST delete after lifetime",
        |eps| !has(eps, "simple4"),
    );
}

#[test]
fn registration_without_links_is_allowed() {
    // An empty link-format document is zero links, not an error.
    let gw = Gateway::start();
    let p = Peer::new(gw.addr());
    let r = p.request(&Req::post("/rd?ep=bare").ct(CT_LINK_FORMAT));
    assert_eq!(r.code, "2.01", "{}", r.text());
    assert!(ep_link(&p, "bare").is_some());
    assert!(lookup(&p, "/rd-lookup/res?ep=bare").is_empty());
}

// ----------------------------------------------------------------------------------------
// The independent `coap` crate as registrant and lookup client
// ----------------------------------------------------------------------------------------

mod with_coap_crate {
    use super::*;
    use coap::client::UdpCoAPClient;
    use coap::request::{CoapOption, Method, RequestBuilder};
    use coap_lite::ResponseType;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    fn location_of(resp: &coap_lite::CoapResponse) -> String {
        let segs: Vec<String> = resp
            .message
            .get_option(CoapOption::LocationPath)
            .map(|l| {
                l.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        format!("/{}", segs.join("/"))
    }

    #[test]
    fn coap_crate_registers_updates_looks_up_and_deletes() {
        let gw = Gateway::start();
        let rd = gw.addr();
        let rt = runtime();
        rt.block_on(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let me = sock.local_addr().unwrap();
            let mut client = UdpCoAPClient::new_with_std_socket(sock, rd).await.unwrap();
            client.set_receive_timeout(Duration::from_secs(3));

            let req = RequestBuilder::new("/rd", Method::Post)
                .queries(vec![b"ep=crate1".to_vec(), b"lt=300".to_vec()])
                .options(vec![(CoapOption::ContentFormat, vec![40])])
                .data(Some(
                    b"</sensors/temp>;rt=\"temperature\";if=\"sensor\"".to_vec(),
                ))
                .build();
            let resp = client.send(req).await.expect("register");
            assert_eq!(*resp.get_status(), ResponseType::Created);
            assert!(resp.message.get_option(CoapOption::LocationQuery).is_none());
            let loc = location_of(&resp);
            assert!(loc.len() > 1, "no Location-Path");

            let lookup_url = format!("coap://{rd}/rd-lookup/res?rt=temperature");
            let resp = UdpCoAPClient::get_with_timeout(&lookup_url, Duration::from_secs(3))
                .await
                .expect("lookup");
            assert_eq!(*resp.get_status(), ResponseType::Content);
            let links = parse_links(&String::from_utf8_lossy(&resp.message.payload)).unwrap();
            assert_eq!(
                link_set(&links),
                link_set(&[link(
                    &format!("coap://{me}/sensors/temp"),
                    &[("rt", "temperature"), ("if", "sensor")]
                )])
            );

            let ep_url = format!("coap://{rd}/rd-lookup/ep?ep=crate1");
            let resp = UdpCoAPClient::get_with_timeout(&ep_url, Duration::from_secs(3))
                .await
                .expect("ep lookup");
            let eps = parse_links(&String::from_utf8_lossy(&resp.message.payload)).unwrap();
            assert_eq!(eps.len(), 1);
            assert_eq!(eps[0].get("base"), Some(format!("coap://{me}").as_str()));
            assert!(eps[0].target.ends_with(&loc));

            let upd = RequestBuilder::new(&loc, Method::Post).build();
            let resp = client.send(upd).await.expect("update");
            assert_eq!(*resp.get_status(), ResponseType::Changed);

            let del = RequestBuilder::new(&loc, Method::Delete).build();
            let resp = client.send(del).await.expect("delete");
            assert_eq!(*resp.get_status(), ResponseType::Deleted);

            let resp = UdpCoAPClient::get_with_timeout(&ep_url, Duration::from_secs(3))
                .await
                .expect("ep lookup after delete");
            assert_eq!(*resp.get_status(), ResponseType::Content);
            assert!(resp.message.payload.is_empty());
        });
    }

    #[test]
    fn coap_crate_discovers_rd_via_well_known_core() {
        let gw = Gateway::start();
        let url = format!("coap://{}/.well-known/core?rt=core.rd*", gw.addr());
        let rt = runtime();
        let resp = rt
            .block_on(UdpCoAPClient::get_with_timeout(
                &url,
                Duration::from_secs(3),
            ))
            .expect("discovery");
        assert_eq!(*resp.get_status(), ResponseType::Content);
        let links = parse_links(&String::from_utf8_lossy(&resp.message.payload)).unwrap();
        let targets: Vec<&str> = links.iter().map(|l| l.target.as_str()).collect();
        for t in ["/rd", "/rd-lookup/ep", "/rd-lookup/res"] {
            assert!(targets.contains(&t), "{t} missing from {targets:?}");
        }
    }
}
