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
use std::sync::Arc;

use super::filter::{endpoint_matches, Filter, LookupQuery, Pattern, ENDPOINT_RT};
use super::group::{is_group, members};
use super::link_writer::{push_link, push_param};
use super::resolve::{resolve, resolved_target};
use crate::registry::model::{BaseOrigin, Registration};

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
pub fn render_endpoints<'a>(
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
    let location = reg.id.location();
    push_link(
        out,
        &location,
        [
            ("ep", Some(reg.ep.as_str())),
            ("d", reg.d.as_ref().map(|d| d.as_str())),
        ]
        .into_iter()
        .filter(|(name, value)| *name == "ep" || value.is_some()),
    );
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
pub fn render_resources<'a>(
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
pub fn render_domains<'a>(
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
pub fn render_groups<'a>(
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
