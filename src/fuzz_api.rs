//! The four untrusted-input entry points, as the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! corpus regression test (`tests/fuzz_regressions.rs`) drive them: one function per target,
//! taking raw bytes, calling exactly what the gateway calls on input from the network (RFC 7252
//! §3 datagrams, RFC 6690 link-format, RFC 9176 §5/§6 query items, platform command frames), and
//! checking that the results are consistent with each other.
//!
//! Not part of the gateway's API (hidden from the docs). A function here panics only when an
//! oracle fails (a round trip that does not round-trip, a count that does not match what was
//! rendered): that panic is the fuzzer's finding. Nothing the input can contain is allowed to
//! panic in the code under test.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::platform::protocol::{parse_inbound, InboundFrame};
use crate::rd::register::check_limited_link;
use crate::rd::{
    decode_query, plan_candidates, render_domains, render_endpoints, render_groups,
    render_resources, GroupRequest, LookupQuery, RegistrationRequest, SimpleRegistrationRequest,
    UpdateRequest,
};
use crate::registry::model::{BaseOrigin, Registration, RegistrationId, Status};
use link_format::Link;

const SOURCE: &str = "[2001:db8::1]:5683";

fn addr(s: &str) -> SocketAddr {
    // Invariant: the two constants above are socket address literals.
    s.parse().expect("literal socket address")
}

/// A datagram as the endpoint sees it: the CoAP crate's own invariant
/// (`coap_endpoint::fuzz_api::datagram_invariant`: peek, decode, parse as request or response).
pub fn coap_datagram(data: &[u8]) {
    coap_endpoint::fuzz_api::datagram_invariant(data);
}

/// A link-format document (a registration payload, a device's `/.well-known/core`). Oracles:
/// what parses serializes to text that parses to the same links; the Limited Link Format check
/// does not panic.
pub fn link_format(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(links) = link_format::parse(text) else {
        return;
    };
    for link in &links {
        let _ = check_limited_link(link);
    }
    assert_link_round_trip(&links);
}

fn assert_link_round_trip(links: &[Link]) {
    let text = link_format::serialize(links);
    match link_format::parse(&text) {
        Ok(again) => assert_eq!(again, links, "serialize→parse changed the links: {text:?}"),
        Err(e) => panic!("serialized links do not parse ({e}): {text:?}"),
    }
}

/// RD request parameters: the bytes before the first 0xFF are Uri-Query items separated by `&`
/// (each must be UTF-8, as the endpoint requires), the rest is the payload. Every RD parser
/// that takes query items runs on them: registration, simple registration, update, draft-11
/// group, and lookup; a lookup query is then bound, planned and rendered for each lookup type
/// against fixed registrations plus the one the same input registers, if it does. Oracle:
/// each rendered lookup is link-format with exactly as many links as the renderer counted.
pub fn rd_query(data: &[u8]) {
    let (query_bytes, payload) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let raw: Vec<&[u8]> = if query_bytes.is_empty() {
        Vec::new()
    } else {
        query_bytes.split(|&b| b == b'&').collect()
    };
    let Ok(query) = decode_query(&raw) else {
        return;
    };
    let source = addr(SOURCE);
    let mut candidates = fixture_registrations();
    if let Ok(reg) = RegistrationRequest::parse(&query, Some(40), payload, source, 90_000) {
        candidates.push(Arc::new(Registration {
            status_history: Default::default(),
            last_seen: Default::default(),
            identity: None,
            id: RegistrationId(100),
            base: reg.effective_base().into(),
            base_origin: match reg.base {
                Some(_) => BaseOrigin::Explicit,
                None => BaseOrigin::FromSource,
            },
            ep: reg.ep,
            d: reg.d,
            lifetime_s: reg.lifetime_s,
            attrs: reg.attrs,
            links: reg.links.into(),
            status: Status::Connected,
            registered_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: u64::MAX,
            source,
        }));
    }
    if let Ok(simple) = SimpleRegistrationRequest::parse(&query, payload, 90_000) {
        let _ = simple.with_links(Some(40), payload, source);
    }
    if let Ok(update) = UpdateRequest::parse(&query, Some(40), payload) {
        let _ = update.check_source(source);
    }
    if let Ok(group) = GroupRequest::parse(&query, Some(40), payload) {
        let _ = group.registration_attrs();
    }
    let Ok(mut lookup) = LookupQuery::parse(&query) else {
        return;
    };
    let _ = plan_candidates(&lookup);
    lookup.bind_groups(candidates.iter().map(|r| r.as_ref()));
    for expose_status in [false, true] {
        let (text, n) = render_endpoints(&candidates, &lookup, expose_status);
        assert_rendered(&text, n);
        let (text, n) = render_resources(&candidates, &lookup, expose_status);
        assert_rendered(&text, n);
    }
    let (text, n) = render_domains(&candidates, &lookup);
    assert_rendered(&text, n);
    let (text, n) = render_groups(&candidates, &lookup);
    assert_rendered(&text, n);
}

fn assert_rendered(text: &str, count: usize) {
    match link_format::parse(text) {
        Ok(links) => assert_eq!(links.len(), count, "renderer miscounted: {text:?}"),
        Err(e) => panic!("rendered lookup is not link-format ({e}): {text:?}"),
    }
}

/// Registrations shaped like RFC 9176's examples: a sector, a group, anchors, a link-local base.
fn fixture_registrations() -> Vec<Arc<Registration>> {
    let links = |text: &str| link_format::parse(text).expect("fixture link-format");
    let mk = |id: u64, ep: &str, d: Option<&str>, base: &str, attrs: &str, payload: &str| {
        let attrs = links(&format!("<>{attrs}"))
            .pop()
            .map(|l| l.params)
            .unwrap_or_default();
        Arc::new(Registration {
            status_history: Default::default(),
            last_seen: Default::default(),
            identity: None,
            id: RegistrationId(id),
            ep: crate::registry::model::EndpointName::new(ep).expect("fixture name"),
            d: d.map(|d| crate::registry::model::Sector::new(d).expect("fixture sector")),
            base: base.into(),
            base_origin: BaseOrigin::Explicit,
            lifetime_s: 90_000,
            attrs,
            links: links(payload).into(),
            status: if id % 2 == 0 {
                Status::Connected
            } else {
                Status::Disconnected
            },
            registered_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: u64::MAX,
            source: addr(SOURCE),
        })
    };
    vec![
        mk(
            1,
            "node1",
            Some("building1"),
            "coap://[2001:db8:3::123]:61616",
            ";et=oic.d.sensor",
            "</sensors/temp>;rt=\"temperature\";if=sensor,</sensors/light>;rt=\"light-lux core.s\";ct=41,<coap://[2001:db8::2]/t>;anchor=\"/sensors/temp\";rel=describedby",
        ),
        mk(
            2,
            "node2",
            None,
            "coap://[fe80::1%25eth0]",
            "",
            "</a>;obs,</b/c>;title=\"x,y\"",
        ),
        mk(
            3,
            "lights",
            Some("building1"),
            "coap://[ff35:30:2001:db8::1]",
            ";et=core.rd-group;member=node1;member=node2",
            "",
        ),
    ]
}

/// One text frame from the platform. Oracles: an error's reply frame serializes; a command
/// re-serializes to JSON that parses to the same command; its payload decoding does not panic.
pub fn platform_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_inbound(text) {
        Err(e) => {
            let reply = e.reply();
            assert!(reply.to_json().is_ok(), "error reply does not serialize");
        }
        Ok(InboundFrame::Command(command)) => {
            let _ = command.payload_bytes();
            let mut value = serde_json::to_value(&command).expect("a command serializes");
            if let Some(obj) = value.as_object_mut() {
                obj.insert("type".into(), "command".into());
            }
            match parse_inbound(&value.to_string()) {
                Ok(InboundFrame::Command(again)) => assert_eq!(again, command),
                Ok(other) => panic!("re-serialized command parses as {other:?}"),
                Err(e) => panic!("re-serialized command does not parse: {e}"),
            }
        }
        Ok(
            InboundFrame::Error { .. } | InboundFrame::Welcome { .. } | InboundFrame::Ack { .. },
        ) => {}
    }
}
