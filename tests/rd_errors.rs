//! Every bad-input row of the RD checklist (rd-checklist.md, "Error codes per bad-input case"):
//! the exact response code, and that the stored state did not change (a full endpoint and
//! resource lookup before and after are identical, and a rejected ep never appears).
//!
//! RFC 9176 §5, §5.3.1, §5.3.2, §6.2, App. C; RFC 7252 §5.8, §5.10.4.

mod common;

use std::collections::BTreeSet;

use common::coap_peer::*;
use common::Gateway;

type Snapshot = (BTreeSet<LinkKey>, BTreeSet<LinkKey>);

/// A gateway holding one known registration (`keep`), and the location of it.
struct Fixture {
    gw: Gateway,
    peer: Peer,
    loc: String,
}

impl Fixture {
    fn new() -> Fixture {
        let gw = Gateway::start();
        let peer = Peer::new(gw.addr());
        let loc = register(
            &peer,
            "ep=keep&lt=600&foo=1",
            "</sensors/temp>;rt=\"temperature\";if=\"sensor\"",
        );
        Fixture { gw, peer, loc }
    }

    fn snapshot(&self) -> Snapshot {
        // Strip `status`: liveness may legitimately flip between the two reads.
        let eps: Vec<Link> = lookup(&self.peer, "/rd-lookup/ep")
            .into_iter()
            .map(|mut l| {
                l.attrs.retain(|(n, _)| n != "status");
                l
            })
            .collect();
        (
            link_set(&eps),
            link_set(&lookup(&self.peer, "/rd-lookup/res")),
        )
    }

    /// Send `req` from a fresh socket, assert `code`, and assert nothing changed.
    fn rejects(&self, req: Req, code: &str) {
        let before = self.snapshot();
        let other = Peer::new(self.gw.addr());
        let resp = other.request(&req);
        assert_eq!(
            resp.code,
            code,
            "request {:?} {:?}?{:?} answered {} {:?}",
            req.method,
            req.path
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>(),
            req.query
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>(),
            resp.code,
            resp.text()
        );
        let after = self.snapshot();
        assert_eq!(before, after, "a rejected request changed the stored state");
    }
}

fn reg(query: &str) -> Req {
    Req::post(&format!("/rd?{query}")).links("</x>;rt=\"bad\"")
}

// ---- ep / d ------------------------------------------------------------------------------

#[test]
fn registration_without_ep_is_4_00() {
    let f = Fixture::new();
    f.rejects(reg("lt=600"), "4.00");
    f.rejects(reg("d=sector1"), "4.00");
}

#[test]
fn registration_with_empty_ep_is_4_00() {
    let f = Fixture::new();
    f.rejects(reg("ep="), "4.00");
}

#[test]
fn ep_longer_than_63_bytes_is_4_00() {
    let f = Fixture::new();
    f.rejects(reg(&format!("ep={}", "e".repeat(64))), "4.00");
    // 22 × '€' = 66 bytes but only 22 characters: the limit is in bytes.
    f.rejects(reg(&format!("ep={}", "€".repeat(22))), "4.00");
}

#[test]
fn d_longer_than_63_bytes_is_4_00() {
    let f = Fixture::new();
    f.rejects(reg(&format!("ep=x&d={}", "d".repeat(64))), "4.00");
}

#[test]
fn ep_with_control_characters_is_4_00() {
    let f = Fixture::new();
    for c in ['\u{1}', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}'] {
        f.rejects(reg(&format!("ep=bad{c}name")), "4.00");
    }
}

#[test]
fn d_with_control_characters_is_4_00() {
    let f = Fixture::new();
    f.rejects(reg("ep=x&d=sec\u{1}tor"), "4.00");
    f.rejects(reg("ep=x&d=sec\u{85}tor"), "4.00");
}

#[test]
fn ep_that_is_not_utf8_is_4_00() {
    let f = Fixture::new();
    let mut item = b"ep=bad".to_vec();
    item.extend_from_slice(&[0xff, 0xfe]);
    f.rejects(Req::post("/rd").links("</x>").query_raw(item), "4.00");
}

#[test]
fn repeated_single_valued_parameters_are_4_00() {
    let f = Fixture::new();
    f.rejects(reg("ep=a&ep=b"), "4.00");
    f.rejects(reg("ep=a&d=x&d=y"), "4.00");
    f.rejects(reg("ep=a&lt=60&lt=70"), "4.00");
    f.rejects(
        reg("ep=a&base=coap://127.0.0.1:1&base=coap://127.0.0.1:2"),
        "4.00",
    );
}

// ---- lt ----------------------------------------------------------------------------------

#[test]
fn lt_zero_non_numeric_or_too_large_is_4_00() {
    let f = Fixture::new();
    for lt in ["0", "abc", "4294967296", "-1", "1.5", ""] {
        f.rejects(reg(&format!("ep=ltbad&lt={lt}")), "4.00");
    }
}

// ---- base --------------------------------------------------------------------------------

#[test]
fn base_with_query_or_fragment_or_unusable_is_4_00() {
    let f = Fixture::new();
    for base in [
        "coap://127.0.0.1:5683?x=1",
        "coap://127.0.0.1:5683#frag",
        "not a uri",
        "/relative/path",
        "coap://[fe80::1%25eth0]:5683",
    ] {
        f.rejects(reg(&format!("ep=basebad&base={base}")), "4.00");
    }
}

// ---- payload -----------------------------------------------------------------------------

#[test]
fn payload_with_content_format_other_than_link_format_is_4_15() {
    let f = Fixture::new();
    f.rejects(
        Req::post("/rd?ep=cf")
            .ct(CT_TEXT_PLAIN)
            .payload(b"</x>;rt=\"bad\"".to_vec()),
        "4.15",
    );
    f.rejects(
        Req::post("/rd?ep=cf").ct(CT_JSON).payload(b"[]".to_vec()),
        "4.15",
    );
}

#[test]
fn payload_that_is_not_utf8_is_4_00() {
    let f = Fixture::new();
    f.rejects(
        Req::post("/rd?ep=utf")
            .ct(CT_LINK_FORMAT)
            .payload(vec![b'<', b'/', 0xff, 0xfe, b'>']),
        "4.00",
    );
}

#[test]
fn unparsable_link_format_is_4_00() {
    let f = Fixture::new();
    for body in [
        "</sensors/temp",
        "</a>;rt=\"unterminated",
        "garbage",
        "</a>;;",
        "</a>,,</b>",
    ] {
        f.rejects(Req::post("/rd?ep=parse").links(body), "4.00");
    }
}

#[test]
fn relative_references_violate_limited_link_format_4_00() {
    let f = Fixture::new();
    for body in [
        "<sensors/x>",
        "<../x>",
        "<./x>",
        "</a>;anchor=\"sensors\"",
        "</a>,<b>",
    ] {
        f.rejects(Req::post("/rd?ep=llf").links(body), "4.00");
    }
}

// ---- update ------------------------------------------------------------------------------

#[test]
fn update_with_payload_is_4_00_and_links_unchanged() {
    let f = Fixture::new();
    f.rejects(Req::post(&f.loc).links("</other>"), "4.00");
}

#[test]
fn update_trying_to_change_ep_or_d_is_4_00() {
    let f = Fixture::new();
    f.rejects(Req::post(&format!("{}?ep=other", f.loc)), "4.00");
    f.rejects(Req::post(&format!("{}?d=other", f.loc)), "4.00");
}

#[test]
fn update_with_bad_lt_or_base_is_4_00() {
    let f = Fixture::new();
    f.rejects(Req::post(&format!("{}?lt=0", f.loc)), "4.00");
    f.rejects(Req::post(&format!("{}?lt=abc", f.loc)), "4.00");
    f.rejects(
        Req::post(&format!("{}?base=coap://127.0.0.1:1?q=1", f.loc)),
        "4.00",
    );
}

#[test]
fn update_or_delete_of_unknown_registration_is_4_04() {
    let f = Fixture::new();
    let unknown = format!("{}0unknown", f.loc);
    f.rejects(Req::post(&unknown), "4.04");
    f.rejects(Req::delete(&unknown), "4.04");
    f.rejects(Req::post("/reg/no-such-registration"), "4.04");
    f.rejects(Req::delete("/reg/no-such-registration"), "4.04");
}

// ---- lookup ------------------------------------------------------------------------------

#[test]
fn page_without_count_is_4_00() {
    let f = Fixture::new();
    f.rejects(Req::get("/rd-lookup/res?page=1"), "4.00");
    f.rejects(Req::get("/rd-lookup/ep?page=0"), "4.00");
}

#[test]
fn negative_or_non_integer_page_and_count_are_4_00() {
    let f = Fixture::new();
    for q in [
        "count=-1",
        "page=-1&count=2",
        "count=abc",
        "page=x&count=2",
        "count=1&count=2",
    ] {
        f.rejects(Req::get(&format!("/rd-lookup/res?{q}")), "4.00");
        f.rejects(Req::get(&format!("/rd-lookup/ep?{q}")), "4.00");
    }
}

#[test]
fn lookup_with_unsupported_accept_is_4_06() {
    let f = Fixture::new();
    f.rejects(Req::get("/rd-lookup/res").accept(CT_TEXT_PLAIN), "4.06");
    f.rejects(Req::get("/rd-lookup/ep").accept(CT_TEXT_PLAIN), "4.06");
    // And Accept: 40 is fine.
    let r = f
        .peer
        .request(&Req::get("/rd-lookup/ep").accept(CT_LINK_FORMAT));
    assert_eq!(r.code, "2.05");
    assert_eq!(r.content_format, Some(CT_LINK_FORMAT));
}

#[test]
fn wrong_method_on_rd_resources_is_4_05() {
    let f = Fixture::new();
    f.rejects(Req::put("/rd-lookup/ep"), "4.05");
    f.rejects(Req::post("/rd-lookup/ep"), "4.05");
    f.rejects(Req::delete("/rd-lookup/res"), "4.05");
    f.rejects(Req::get("/rd"), "4.05");
    f.rejects(Req::put("/rd?ep=x").links("</x>"), "4.05");
    f.rejects(Req::delete("/rd"), "4.05");
    f.rejects(Req::put(&f.loc), "4.05");
}

#[test]
fn state_is_unchanged_after_a_burst_of_bad_requests_and_rd_still_answers() {
    // None of these may crash the gateway (each would be a 5.xx or silence).
    let f = Fixture::new();
    let before = f.snapshot();
    let p = Peer::new(f.gw.addr());
    let bad = [
        reg("lt=0"),
        reg(&format!("ep={}", "x".repeat(300))),
        Req::post("/rd?ep=z").links("<"),
        Req::post("/rd?ep=z").links(">"),
        Req::post("/rd?ep=z").links("</a>;rt=\"\\"),
        Req::post("/rd?ep=z").links("</a>;=x"),
        Req::get("/rd-lookup/res?count=99999999999999999999"),
        Req::get("/rd-lookup/res?page=99999999999999999999&count=1"),
    ];
    for r in &bad {
        let resp = p.request(r);
        assert!(
            resp.code.starts_with("4.") || resp.code.starts_with("2."),
            "{:?} -> {}",
            r.query,
            resp.code
        );
    }
    assert_eq!(before, f.snapshot());
    assert!(ep_link(&f.peer, "z").is_none());
}
