//! Rendering of lookup results as link-format (RFC 9176 §6), with paging (§6.2).
//!
//! The RdServer passes the candidate registrations (live ones, in id order, possibly
//! pre-selected through the index with `filter::plan_candidates`) and the parsed query; each
//! function filters exactly, pages and writes the payload, returning it with the number of links
//! written. An empty result is an empty payload (2.05, §6.2; never draft-11's 4.04).
//!
//! - endpoint lookup (§6.4): `</reg/17>;ep="node1";d="s";base="coap://…";rt="core.rd-ep"` then
//!   the extra attributes (and `status` when exposed); never `lt`;
//! - resource lookup (§6.1): the registered links with the target fully resolved, the anchor
//!   resolved only if present, every other parameter as registered;
//! - draft-11 domain lookup (`/rd-lookup/d`): `<>;d="…"` per distinct sector of the matching
//!   endpoints;
//! - draft-11 group lookup (`/rd-lookup/gp`): `</reg/12>;gp="…";d="…";con="…"` per group.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use super::filter::{endpoint_matches, Filter, LookupQuery, Pattern, ENDPOINT_RT};
use super::group::{is_group, members};
use super::link_writer::{push_link, push_param};
use super::resolve::{is_link_local_base, is_link_local_ip, resolve, resolved_target};
use crate::registry::model::{BaseOrigin, Registration};

/// RFC 9176 §6.1, §6.4: a registration with a link-local base is shown only to lookups "made
/// from the link on which the registered endpoint can be reached". Approximated as: the requester
/// is link-local too and, when both addresses carry an IPv6 scope (interface) id, the same one
/// as the registrant's. The RdServer filters candidates with this before rendering.
pub(crate) fn visible_to(reg: &Registration, requester: SocketAddr) -> bool {
    if !is_link_local_base(&reg.base) {
        return true;
    }
    if !is_link_local_ip(requester.ip()) {
        return false;
    }
    match (reg.source, requester) {
        (SocketAddr::V6(a), SocketAddr::V6(b)) if a.scope_id() != 0 && b.scope_id() != 0 => {
            a.scope_id() == b.scope_id()
        }
        _ => true,
    }
}

/// Applies the query's page window to a stream of matches, writing the kept ones.
struct Pager {
    skip: usize,
    remaining: Option<usize>,
    written: usize,
}

impl Pager {
    fn new(query: &LookupQuery) -> Pager {
        let (skip, remaining) = query.window();
        Pager {
            skip,
            remaining,
            written: 0,
        }
    }

    fn full(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Whether the next match is inside the window (and counts it).
    fn admit(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        match &mut self.remaining {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                self.written += 1;
                true
            }
            None => {
                self.written += 1;
                true
            }
        }
    }
}

/// Endpoint lookup (`/rd-lookup/ep`, RFC 9176 §6.4). `expose_status` adds `status=1|0` to each
/// link and makes `status` filterable.
pub(crate) fn render_endpoints<'a>(
    candidates: impl IntoIterator<Item = &'a Arc<Registration>>,
    query: &LookupQuery,
    expose_status: bool,
) -> (String, usize) {
    let mut out = String::new();
    let mut pager = Pager::new(query);
    for reg in candidates {
        if pager.full() {
            break;
        }
        if query.matches_endpoint(reg, expose_status) && pager.admit() {
            write_endpoint_link(&mut out, reg, expose_status);
        }
    }
    (out, pager.written)
}

fn write_endpoint_link(out: &mut String, reg: &Registration, expose_status: bool) {
    push_link(out, &reg.id.location(), [("ep", Some(reg.ep.as_str()))]);
    if let Some(d) = &reg.d {
        push_param(out, "d", Some(d.as_str()));
    }
    push_param(out, "base", Some(&reg.base));
    push_param(out, "rt", Some(ENDPOINT_RT));
    for attr in &reg.attrs {
        push_param(out, &attr.name, attr.value.as_deref());
    }
    if expose_status {
        let status = reg.status.as_u8().to_string();
        push_param(out, "status", Some(&status));
    }
}

/// Resource lookup (`/rd-lookup/res`, RFC 9176 §6.1). Paging counts links, not endpoints.
pub(crate) fn render_resources<'a>(
    candidates: impl IntoIterator<Item = &'a Arc<Registration>>,
    query: &LookupQuery,
    expose_status: bool,
) -> (String, usize) {
    let mut out = String::new();
    let mut pager = Pager::new(query);
    'registrations: for reg in candidates {
        for link in &reg.links {
            if pager.full() {
                break 'registrations;
            }
            if query.matches_link(reg, link, expose_status) && pager.admit() {
                let target = resolved_target(&reg.base, link);
                push_link(&mut out, &target, []);
                for p in &link.params {
                    if p.name == "anchor" {
                        let anchor = p.value.as_deref().map(|a| resolve(&reg.base, a));
                        push_param(&mut out, "anchor", anchor.as_deref());
                    } else {
                        push_param(&mut out, &p.name, p.value.as_deref());
                    }
                }
            }
        }
    }
    (out, pager.written)
}

/// draft-11 domain lookup (`/rd-lookup/d`, draft-11 §7): the distinct sectors of the endpoints
/// matching the query, sorted, as `<>;d="…"`. Endpoints without a sector contribute nothing.
pub(crate) fn render_domains<'a>(
    candidates: impl IntoIterator<Item = &'a Arc<Registration>>,
    query: &LookupQuery,
) -> (String, usize) {
    let sectors: BTreeSet<&str> = candidates
        .into_iter()
        .filter(|reg| query.matches_endpoint(reg, false))
        .filter_map(|reg| reg.d.as_ref().map(|d| d.as_str()))
        .collect();
    let mut out = String::new();
    let mut pager = Pager::new(query);
    for d in sectors {
        if pager.full() {
            break;
        }
        if pager.admit() {
            push_link(&mut out, "", [("d", Some(d))]);
        }
    }
    (out, pager.written)
}

/// How a filter applies to a group in draft-11 group lookup: `gp` names the group (its `ep`),
/// `ep` names a member, `con` is the base; anything else matches as on an endpoint.
fn group_matches(reg: &Registration, f: &Filter) -> bool {
    match f.name.as_str() {
        "gp" => f.pattern.matches(Some(reg.ep.as_str())),
        "ep" => members(reg).any(|m| f.pattern.matches(Some(m.as_str()))),
        "con" => f.pattern.matches(Some(&reg.base)),
        _ => endpoint_matches(reg, f, false),
    }
}

/// draft-11 group lookup (`/rd-lookup/gp`, draft-11 §7) over group registrations
/// (`et=core.rd-group`, see `group`): `</reg/12>;gp="lights";d="…";con="coap://[ff35::1]"`.
/// `con` is shown only for an explicit base (a multicast address), `d` only when set.
pub(crate) fn render_groups<'a>(
    candidates: impl IntoIterator<Item = &'a Arc<Registration>>,
    query: &LookupQuery,
) -> (String, usize) {
    let mut out = String::new();
    let mut pager = Pager::new(query);
    for reg in candidates {
        if pager.full() {
            break;
        }
        if !is_group(reg) {
            continue;
        }
        let matched = query.filters.iter().all(|f| match f.pattern {
            Pattern::MemberOf(_) => false,
            _ => group_matches(reg, f),
        });
        if matched && pager.admit() {
            push_link(
                &mut out,
                &reg.id.location(),
                [("gp", Some(reg.ep.as_str()))],
            );
            if let Some(d) = &reg.d {
                push_param(&mut out, "d", Some(d.as_str()));
            }
            if reg.base_origin == BaseOrigin::Explicit {
                push_param(&mut out, "con", Some(&reg.base));
            }
        }
    }
    (out, pager.written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rd::fixtures::{reg, rfc6690_example_links};
    use crate::rd::group::GroupRequest;
    use crate::registry::model::{EndpointName, Status};
    use link_format::Link;

    fn q(items: &[&str]) -> LookupQuery {
        LookupQuery::parse(items).unwrap()
    }

    fn res(regs: &[Arc<Registration>], query: &[&str]) -> (String, usize) {
        render_resources(regs, &q(query), false)
    }

    fn eps(regs: &[Arc<Registration>], query: &[&str]) -> (String, usize) {
        render_endpoints(regs, &q(query), false)
    }

    /// RFC 9176 §5: `POST /rd?ep=node1` from `[2001:db8:3::101]`, then resource lookup.
    fn section_5_example() -> Arc<Registration> {
        reg(4521, "node1", "coap://[2001:db8:3::101]")
            .derived_base()
            .link(
                Link::new("/sensors/temp")
                    .with("rt", Some("temperature-c"))
                    .with("if", Some("sensor")),
            )
            .link(
                Link::new("http://www.example.com/sensors/temp")
                    .with("anchor", Some("/sensors/temp"))
                    .with("rel", Some("describedby")),
            )
            .build()
    }

    #[test]
    fn registration_example_resolves_targets_and_present_anchors_only() {
        let regs = [section_5_example()];
        let (payload, n) = res(&regs, &["ep=node1"]);
        assert_eq!(n, 2);
        assert_eq!(
            payload,
            "<coap://[2001:db8:3::101]/sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\
<http://www.example.com/sensors/temp>;anchor=\"coap://[2001:db8:3::101]/sensors/temp\";\
rel=\"describedby\""
        );
    }

    #[test]
    fn base_change_re_resolves_everything() {
        // §5.3.1: the lookup before and after `?base=coaps://new.example.com:5684`.
        let before = reg(4521, "endpoint1", "coap://local-proxy-old.example.com:5683")
            .link(
                Link::new("/sensors/temp")
                    .with("rt", Some("temperature-c"))
                    .with("if", Some("sensor")),
            )
            .link(
                Link::new("http://www.example.com/sensors/temp")
                    .with("anchor", Some("/sensors/temp"))
                    .with("rel", Some("describedby")),
            )
            .build();
        let (payload, _) = res(std::slice::from_ref(&before), &["ep=endpoint1"]);
        assert_eq!(
            payload,
            "<coap://local-proxy-old.example.com:5683/sensors/temp>;rt=\"temperature-c\";\
if=\"sensor\",<http://www.example.com/sensors/temp>;\
anchor=\"coap://local-proxy-old.example.com:5683/sensors/temp\";rel=\"describedby\""
        );
        let mut after = (*before).clone();
        after.base = "coaps://new.example.com:5684".into();
        let (payload, _) = res(&[Arc::new(after)], &["ep=endpoint1"]);
        assert_eq!(
            payload,
            "<coaps://new.example.com:5684/sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\
<http://www.example.com/sensors/temp>;anchor=\"coaps://new.example.com:5684/sensors/temp\";\
rel=\"describedby\""
        );
    }

    #[test]
    fn resource_lookup_by_rt() {
        // §6.3: GET /rd-lookup/res?rt=tag:example.org,2020:temperature
        let regs = [
            reg(1, "node1", "coap://[2001:db8:3::123]:61616")
                .link(Link::new("/temp").with("rt", Some("tag:example.org,2020:temperature")))
                .link(Link::new("/light").with("rt", Some("tag:example.org,2020:light")))
                .build(),
            reg(2, "node2", "coap://[2001:db8:3::124]")
                .link(Link::new("/west").with("rt", Some("tag:example.org,2020:light")))
                .build(),
        ];
        assert_eq!(
            res(&regs, &["rt=tag:example.org,2020:temperature"]),
            (
                "<coap://[2001:db8:3::123]:61616/temp>;rt=\"tag:example.org,2020:temperature\""
                    .to_string(),
                1
            )
        );
        assert_eq!(res(&regs, &["rt=tag:example.org,2020:light"]).1, 2);
        assert_eq!(res(&regs, &["rt=tag:example.org,2020:*"]).1, 3);
        // Nothing matches: an empty payload, zero links (§6.2).
        assert_eq!(res(&regs, &["rt=humidity"]), (String::new(), 0));
    }

    #[test]
    fn resource_lookup_paging() {
        // §6.3: ten links res/0..res/9, pages of 5; and the brief's ?page=1&count=2.
        let mut builder = reg(1, "node1", "coap://[2001:db8:3::123]:61616");
        for i in 0..10 {
            builder = builder.link(Link::new(format!("/res/{i}")).with("ct", Some("60")));
        }
        let regs = [builder.build()];
        let page = |items: &[&str]| {
            let (payload, n) = res(&regs, items);
            let targets: Vec<String> = payload
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|l| {
                    l.trim_start_matches("<coap://[2001:db8:3::123]:61616")
                        .to_string()
                })
                .collect();
            assert_eq!(targets.len(), n);
            targets
        };
        assert_eq!(
            page(&["page=0", "count=5"]),
            [
                "/res/0>;ct=60",
                "/res/1>;ct=60",
                "/res/2>;ct=60",
                "/res/3>;ct=60",
                "/res/4>;ct=60"
            ]
        );
        assert_eq!(page(&["page=1", "count=5"])[0], "/res/5>;ct=60");
        assert_eq!(page(&["page=1", "count=5"]).len(), 5);
        assert_eq!(
            page(&["page=1", "count=2"]),
            ["/res/2>;ct=60", "/res/3>;ct=60"]
        );
        assert_eq!(page(&["count=3"]).len(), 3);
        assert_eq!(page(&["page=3", "count=3"]), ["/res/9>;ct=60"]);
        assert!(page(&["page=4", "count=3"]).is_empty());
        assert!(page(&["count=0"]).is_empty());
        assert_eq!(page(&[]).len(), 10);
    }

    #[test]
    fn paging_spans_registrations_in_candidate_order() {
        let regs: Vec<_> = (1..=3)
            .map(|i| {
                reg(i, &format!("n{i}"), &format!("coap://h{i}"))
                    .link(Link::new("/a").with("rt", Some("x")))
                    .link(Link::new("/b").with("rt", Some("x")))
                    .build()
            })
            .collect();
        assert_eq!(
            res(&regs, &["rt=x", "page=1", "count=2"]).0,
            "<coap://h2/a>;rt=\"x\",<coap://h2/b>;rt=\"x\""
        );
        assert_eq!(res(&regs, &["rt=x", "page=1", "count=4"]).1, 2);
        assert_eq!(
            eps(&regs, &["page=2", "count=1"]).0,
            "</reg/3>;ep=n3;base=\"coap://h3\";rt=\"core.rd-ep\""
        );
    }

    #[test]
    fn resource_lookup_by_endpoint_type_over_two_endpoints() {
        // §6.3: two endpoints registered the RFC 6690 §5 payload, looked up by `et`.
        let regs: Vec<_> = ["sensor1", "sensor2"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut b = reg(i as u64 + 1, name, &format!("coap://{name}.example.com"))
                    .attr("et", Some("tag:example.com,2020:platform"));
                for l in rfc6690_example_links() {
                    b = b.link(l);
                }
                b.build()
            })
            .collect();
        let (payload, n) = res(&regs, &["et=tag:example.com,2020:platform"]);
        assert_eq!(n, 10);
        let expected = |h: &str| {
            format!(
                "<coap://{h}/sensors>;ct=40;title=\"Sensor Index\",\
<coap://{h}/sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\
<coap://{h}/sensors/light>;rt=\"light-lux\";if=\"sensor\",\
<http://www.example.com/sensors/t123>;anchor=\"coap://{h}/sensors/temp\";rel=\"describedby\",\
<coap://{h}/t>;anchor=\"coap://{h}/sensors/temp\";rel=\"alternate\""
            )
        };
        assert_eq!(
            payload,
            format!(
                "{},{}",
                expected("sensor1.example.com"),
                expected("sensor2.example.com")
            )
        );
        // href and anchor filters in URI form (§6.2).
        assert_eq!(
            res(&regs, &["href=coap://sensor2.example.com/t"]).0,
            "<coap://sensor2.example.com/t>;anchor=\"coap://sensor2.example.com/sensors/temp\";\
rel=\"alternate\""
        );
        assert_eq!(
            res(&regs, &["anchor=coap://sensor1.example.com/sensors/temp"]).1,
            2
        );
        assert_eq!(
            res(
                &regs,
                &["href=http://www.example.com/sensors/t123", "ep=sensor2"]
            )
            .0,
            "<http://www.example.com/sensors/t123>;\
anchor=\"coap://sensor2.example.com/sensors/temp\";rel=\"describedby\""
        );
        // `href` on a resource lookup also matches the registration resource (§6.2).
        assert_eq!(res(&regs, &["href=/reg/2"]).1, 5);
    }

    #[test]
    fn endpoint_lookup_by_endpoint_type() {
        // §6.4: GET /rd-lookup/ep?et=tag:example.com,2020:platform
        let regs = [
            reg(1234, "node5", "coap://[2001:db8:3::127]:61616")
                .attr("et", Some("tag:example.com,2020:platform"))
                .attr("ct", Some("40"))
                .build(),
            reg(4521, "node7", "coap://[2001:db8:3::129]:61616")
                .d("floor-3")
                .attr("et", Some("tag:example.com,2020:platform"))
                .attr("ct", Some("40"))
                .build(),
            reg(4522, "node8", "coap://[2001:db8:3::130]")
                .attr("et", Some("oic.d.sensor"))
                .build(),
        ];
        assert_eq!(
            eps(&regs, &["et=tag:example.com,2020:platform"]),
            (
                "</reg/1234>;ep=node5;base=\"coap://[2001:db8:3::127]:61616\";\
rt=\"core.rd-ep\";et=\"tag:example.com,2020:platform\";ct=40,\
</reg/4521>;ep=node7;d=floor-3;base=\"coap://[2001:db8:3::129]:61616\";\
rt=\"core.rd-ep\";et=\"tag:example.com,2020:platform\";ct=40"
                    .to_string(),
                2
            )
        );
        assert_eq!(
            eps(&regs, &["et=oic.d.sensor"]).0,
            "</reg/4522>;ep=node8;base=\"coap://[2001:db8:3::130]\";rt=\"core.rd-ep\";\
et=oic.d.sensor"
        );
        assert_eq!(eps(&regs, &["ep=node7"]).1, 1);
        assert_eq!(eps(&regs, &["href=/reg/1234"]).1, 1);
        assert_eq!(eps(&regs, &["d=floor-3"]).1, 1);
        assert_eq!(eps(&regs, &["rt=core.rd-ep"]).1, 3);
        assert!(!eps(&regs, &[]).0.contains("lt="), "lt is never reported");
        assert_eq!(eps(&regs, &["ep=nobody"]), (String::new(), 0));
    }

    #[test]
    fn endpoint_lookup_cross_matches_links_and_shows_status_when_asked() {
        let regs = [
            section_5_example(),
            reg(2, "other", "coap://h")
                .status(Status::Disconnected)
                .build(),
        ];
        assert_eq!(eps(&regs, &["rt=temperature-c"]).1, 1);
        assert_eq!(
            eps(&regs, &["href=http://www.example.com/sensors/temp"]).1,
            1
        );
        let (payload, n) = render_endpoints(&regs, &q(&["status=0"]), true);
        assert_eq!(n, 1);
        assert_eq!(
            payload,
            "</reg/2>;ep=other;base=\"coap://h\";rt=\"core.rd-ep\";status=0"
        );
        assert!(!eps(&regs, &[]).0.contains("status"));
    }

    #[test]
    fn link_local_registrations_are_shown_on_their_link_only() {
        let mut local = (*reg(1, "ll", "coap://[fe80::1]").build()).clone();
        local.source = "[fe80::1%2]:5683".parse().unwrap();
        let global = reg(2, "g", "coap://[2001:db8::1]").build();
        let far: SocketAddr = "[2001:db8::9]:5683".parse().unwrap();
        let same_link: SocketAddr = "[fe80::9%2]:5683".parse().unwrap();
        let other_link: SocketAddr = "[fe80::9%3]:5683".parse().unwrap();
        assert!(!visible_to(&local, far));
        assert!(visible_to(&local, same_link));
        assert!(!visible_to(&local, other_link));
        assert!(visible_to(&global, far));
        assert!(visible_to(&global, other_link));
    }

    /// RFC 9176 App. A lighting example: three registrations and a group.
    fn lighting() -> Vec<Arc<Registration>> {
        let light = |path: &str| Link::new(path).with("rt", Some("tag:example.com,2020:light"));
        let luminary = |id, ep: &str, addr: &str| {
            reg(id, ep, addr)
                .d("R2-4-015")
                .link(light("/light/left"))
                .link(light("/light/middle"))
                .link(light("/light/right"))
                .build()
        };
        vec![
            luminary(4521, "lm_R2-4-015_wndw", "coap://[2001:db8:4::1]"),
            luminary(4522, "lm_R2-4-015_door", "coap://[2001:db8:4::2]"),
            reg(4523, "ps_R2-4-015_door", "coap://[2001:db8:4::3]")
                .d("R2-4-015")
                .link(Link::new("/ps").with("rt", Some("tag:example.com,2020:p-sensor")))
                .build(),
            reg(501, "grp_R2-4-015", "coap://[ff05::1]")
                .d("R2-4-015")
                .attr("et", Some("core.rd-group"))
                .link(light("/light/left"))
                .link(light("/light/middle"))
                .link(light("/light/right"))
                .build(),
        ]
    }

    #[test]
    fn groups_as_registrations_per_appendix_a() {
        let regs = lighting();
        assert_eq!(
            eps(
                &regs,
                &[
                    "d=R2-4-015",
                    "et=core.rd-group",
                    "rt=tag:example.com,2020:light"
                ]
            )
            .0,
            "</reg/501>;ep=grp_R2-4-015;d=R2-4-015;base=\"coap://[ff05::1]\";\
rt=\"core.rd-ep\";et=core.rd-group"
        );
        let (payload, n) = res(&regs, &["et=core.rd-group"]);
        assert_eq!(n, 3);
        assert!(
            payload.starts_with("<coap://[ff05::1]/light/left>;rt=\"tag:example.com,2020:light\",")
        );
        assert_eq!(
            res(&regs, &["d=R2-4-015", "rt=tag:example.com,2020:light"]).1,
            9
        );
    }

    #[test]
    fn draft_11_groups_and_domains() {
        let mut regs = lighting();
        let group = GroupRequest::parse(
            &[
                "gp=lights",
                "d=R2-4-015",
                "con=coap://[ff35:30:2001:db8::1]",
            ],
            Some(40),
            b"",
        )
        .unwrap();
        let group = GroupRequest {
            members: vec![
                EndpointName::new("lm_R2-4-015_wndw").unwrap(),
                EndpointName::new("lm_R2-4-015_door").unwrap(),
            ],
            ..group
        }
        .into_registration("[2001:db8:4::ff]:5683".parse().unwrap(), u32::MAX);
        let mut b = reg(600, group.ep.as_str(), group.base.as_deref().unwrap()).d("R2-4-015");
        for a in group.attrs {
            b = b.attr(&a.name, a.value.as_deref());
        }
        regs.push(b.build());
        regs.push(
            reg(700, "elsewhere", "coap://[2001:db8:5::1]")
                .d("B1")
                .build(),
        );

        // /rd-lookup/gp lists both groups; ?gp= and ?ep= select by name and member.
        let (payload, n) = render_groups(&regs, &q(&[]));
        assert_eq!(n, 2);
        assert_eq!(
            payload,
            "</reg/501>;gp=grp_R2-4-015;d=R2-4-015;con=\"coap://[ff05::1]\",\
</reg/600>;gp=lights;d=R2-4-015;con=\"coap://[ff35:30:2001:db8::1]\""
        );
        assert_eq!(render_groups(&regs, &q(&["gp=lights"])).1, 1);
        assert_eq!(
            render_groups(&regs, &q(&["ep=lm_R2-4-015_door"])).0,
            "</reg/600>;gp=lights;d=R2-4-015;con=\"coap://[ff35:30:2001:db8::1]\""
        );
        assert_eq!(render_groups(&regs, &q(&["ep=ps_R2-4-015_door"])).1, 0);

        // Members are attributes, not links: no pollution of resource lookup or `ep=`.
        assert_eq!(eps(&regs, &["ep=lm_R2-4-015_door"]).1, 1);
        assert_eq!(res(&regs, &["ep=lights"]).1, 0);
        assert!(
            eps(&regs, &["gp=lights"]).0.is_empty(),
            "unbound gp is an attribute"
        );

        // /rd-lookup/ep?gp=lights (draft-11 §7) once the groups are bound.
        let mut query = q(&["gp=lights"]);
        query.bind_groups(regs.iter().map(|r| &**r));
        let (payload, n) = render_endpoints(&regs, &query, false);
        assert_eq!(n, 2);
        assert!(payload.starts_with("</reg/4521>;ep=lm_R2-4-015_wndw"));
        assert_eq!(render_resources(&regs, &query, false).1, 6);

        // /rd-lookup/d: distinct sectors, sorted.
        assert_eq!(
            render_domains(&regs, &q(&[])),
            ("<>;d=B1,<>;d=R2-4-015".to_string(), 2)
        );
        assert_eq!(
            render_domains(&regs, &q(&["ep=elsewhere"])),
            ("<>;d=B1".to_string(), 1)
        );
        assert_eq!(render_domains(&regs, &q(&["page=1", "count=1"])).1, 1);
    }
}
