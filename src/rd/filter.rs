//! Lookup queries and the matching rules of RFC 9176 §6.2.
//!
//! `LookupQuery::parse` turns the query items of a `GET /rd-lookup/{ep,res,d,gp}` into paging
//! (`page`, `count`) and filters. Every filter must match (§6.2 "All included criteria MUST
//! match"). One filter matches an endpoint or a link as follows:
//!
//! - same attribute name and value, or a prefix when the value ends in `*` (§6.2, RFC 6690 §4.1);
//!   a valueless item (`?obs`) matches when the attribute is present, with or without value;
//! - `rt`, `if`, `rel` (relation-types in the link-format ABNF, §6.2) and `ct` (a space-separated
//!   list per RFC 7252 §7.2.1) match when any space-separated value matches;
//! - `et` and other endpoint attributes are repeated attributes, not lists (§9.3.1);
//! - cross-matching (§6.2): a resource link matches if it or its endpoint matches; an endpoint
//!   matches if it or any of its links matches. Each filter is judged on its own, so
//!   `?rt=a&if=b` finds an endpoint with one link `rt=a` and another `if=b`;
//! - `href` (§6.2): on a link, the fully resolved target (URI form); on an endpoint, its
//!   registration resource `/reg/<id>`, given path-absolute or as a URI (the path is compared);
//! - `anchor` (§6.2): the resolved anchor, only for links that have one;
//! - the endpoint's own attributes are what endpoint lookup shows (§6.4): `ep`, `d`, `base`,
//!   `rt=core.rd-ep`, extra attributes, and `status` when the RD exposes it. `lt` is not shown
//!   and so never matches.
//!
//! The RdServer calls `LookupQuery::parse`; `lookup` renders with these predicates;
//! `plan_candidates` tells the Registry index which filters it can pre-select on.

use super::error::RdError;
use super::params::QueryParams;
use super::resolve::{path_of, resolve, resolved_target};
use crate::link_format::Link;
use crate::registry::model::{EndpointName, Registration, Sector};

/// The resource type of registration resources in endpoint lookup (RFC 9176 §6.4, §9.1).
pub const ENDPOINT_RT: &str = "core.rd-ep";

/// Attributes whose value is a space-separated list.
const LIST_ATTRS: &[&str] = &["rt", "if", "rel", "ct"];

/// What a filter requires of an attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `name=value`
    Exact(String),
    /// `name=val*`: the value starts with the given text (RFC 6690 §4.1).
    Prefix(String),
    /// `name` without `=`: the attribute is present.
    Present,
    /// draft-11 `gp=…` on endpoint or resource lookup after [`LookupQuery::bind_groups`]: the
    /// endpoint is a member of one of these groups (identified by member name and sector).
    MemberOf(Vec<(Option<Sector>, EndpointName)>),
}

impl Pattern {
    /// The pattern of a query item's value: valueless → `Present`, trailing `*` → `Prefix`.
    pub fn from_value(value: Option<&str>) -> Pattern {
        match value {
            None => Pattern::Present,
            Some(v) => match v.strip_suffix('*') {
                Some(prefix) => Pattern::Prefix(prefix.to_string()),
                None => Pattern::Exact(v.to_string()),
            },
        }
    }

    /// Whether an attribute value (absent for a valueless attribute) satisfies the pattern.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Pattern::Present, _) => true,
            (Pattern::Exact(want), Some(v)) => v == want,
            (Pattern::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            _ => false,
        }
    }

    /// Like `matches`, for a space-separated list: any element may match.
    pub fn matches_any_token(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Pattern::Present, _) => true,
            (_, Some(v)) => v.split(' ').any(|t| self.matches(Some(t))),
            _ => false,
        }
    }
}

/// One search criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub pattern: Pattern,
}

/// A parsed lookup query: filters (ANDed) and paging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupQuery {
    pub filters: Vec<Filter>,
    pub page: Option<u64>,
    pub count: Option<u64>,
}

fn parse_paging(params: &QueryParams, name: &'static str) -> Result<Option<u64>, RdError> {
    params
        .single(name)?
        .map(|v| {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RdError::InvalidPaging {
                    param: name,
                    value: v.to_string(),
                });
            }
            // Beyond u64 every page is empty anyway; saturate instead of refusing.
            Ok(v.parse::<u64>().unwrap_or(u64::MAX))
        })
        .transpose()
}

impl LookupQuery {
    /// `page` and `count`: non-negative integers, single-valued; `page` requires `count`
    /// (§6.2); all 4.00 otherwise. Every other item is a filter.
    pub fn parse<S: AsRef<str>>(query: &[S]) -> Result<LookupQuery, RdError> {
        let params = QueryParams::parse(query)?;
        let page = parse_paging(&params, "page")?;
        let count = parse_paging(&params, "count")?;
        if page.is_some() && count.is_none() {
            return Err(RdError::PageWithoutCount);
        }
        let filters = params
            .others(&["page", "count"])
            .map(|i| Filter {
                name: i.name.clone(),
                pattern: Pattern::from_value(i.value.as_deref()),
            })
            .collect();
        Ok(LookupQuery {
            filters,
            page,
            count,
        })
    }

    /// Links to skip and the maximum to return: `page*count` and `count` (§6.2, pages and links
    /// numbered from zero); everything when there is no `count`.
    pub fn window(&self) -> (usize, Option<usize>) {
        match self.count {
            None => (0, None),
            Some(count) => {
                let skip = self.page.unwrap_or(0).saturating_mul(count);
                (
                    usize::try_from(skip).unwrap_or(usize::MAX),
                    Some(usize::try_from(count).unwrap_or(usize::MAX)),
                )
            }
        }
    }

    /// Endpoint lookup: every filter matches the endpoint (with cross-matching).
    pub fn matches_endpoint(&self, reg: &Registration, expose_status: bool) -> bool {
        self.filters
            .iter()
            .all(|f| endpoint_matches(reg, f, expose_status))
    }

    /// Resource lookup: every filter matches the link (with cross-matching).
    pub fn matches_link(&self, reg: &Registration, link: &Link, expose_status: bool) -> bool {
        self.filters
            .iter()
            .all(|f| link_matches(reg, link, f, expose_status))
    }

    /// draft-11 `gp=…` on endpoint and resource lookup (draft-11 §7: "endpoints in a particular
    /// group"): replaces each `gp` filter by the members of the matching groups. `groups` are
    /// the group registrations (see `group`); call before matching. Without this call `gp` is an
    /// ordinary attribute filter.
    pub fn bind_groups<'a>(&mut self, groups: impl IntoIterator<Item = &'a Registration> + Clone) {
        for filter in self.filters.iter_mut().filter(|f| f.name == "gp") {
            let members = groups
                .clone()
                .into_iter()
                .filter(|g| {
                    super::group::is_group(g) && filter.pattern.matches(Some(g.ep.as_str()))
                })
                .flat_map(|g| super::group::members(g).map(move |m| (g.d.clone(), m)))
                .collect();
            filter.pattern = Pattern::MemberOf(members);
        }
    }
}

/// The endpoint's own attributes, as endpoint lookup shows them (§6.4), without cross-matching.
fn endpoint_own_matches(reg: &Registration, f: &Filter, expose_status: bool) -> bool {
    let p = &f.pattern;
    if let Pattern::MemberOf(members) = p {
        return members
            .iter()
            .any(|(d, ep)| *ep == reg.ep && d.as_ref() == reg.d.as_ref());
    }
    match f.name.as_str() {
        "ep" => p.matches(Some(reg.ep.as_str())),
        "d" => reg.d.as_ref().is_some_and(|d| p.matches(Some(d.as_str()))),
        "base" => p.matches(Some(&reg.base)),
        "href" => {
            let location = reg.id.location();
            match p {
                Pattern::Exact(v) => path_of(v) == location,
                Pattern::Prefix(v) => location.starts_with(path_of(v)),
                _ => p.matches(Some(&location)),
            }
        }
        "rt" => {
            p.matches_any_token(Some(ENDPOINT_RT))
                || reg
                    .attrs
                    .iter()
                    .any(|a| a.name == "rt" && p.matches_any_token(a.value.as_deref()))
        }
        "lt" | "anchor" => false,
        "status" if expose_status => {
            let status = reg.status.as_u8().to_string();
            p.matches(Some(&status))
        }
        name => reg
            .attrs
            .iter()
            .any(|a| a.name == name && p.matches(a.value.as_deref())),
    }
}

/// The link's own attributes (§6.1, §6.2), without cross-matching.
fn link_own_matches(reg: &Registration, link: &Link, f: &Filter) -> bool {
    let p = &f.pattern;
    match f.name.as_str() {
        "href" => match p {
            Pattern::Present => true,
            _ => p.matches(Some(&resolved_target(&reg.base, link))),
        },
        "anchor" => match link.anchor() {
            None => false,
            Some(anchor) => match p {
                Pattern::Present => true,
                _ => p.matches(Some(&resolve(&reg.base, anchor))),
            },
        },
        name if LIST_ATTRS.contains(&name) => link
            .params
            .iter()
            .any(|a| a.name == name && p.matches_any_token(a.value.as_deref())),
        name => link
            .params
            .iter()
            .any(|a| a.name == name && p.matches(a.value.as_deref())),
    }
}

/// Whether an endpoint (registration) satisfies one filter: its own attributes, or any of its
/// links (cross-matching, §6.2).
pub fn endpoint_matches(reg: &Registration, filter: &Filter, expose_status: bool) -> bool {
    endpoint_own_matches(reg, filter, expose_status)
        || (!matches!(filter.pattern, Pattern::MemberOf(_))
            && reg.links.iter().any(|l| link_own_matches(reg, l, filter)))
}

/// Whether a resource link satisfies one filter: its own attributes, or its endpoint's
/// (cross-matching, §6.2). Sibling links do not count.
pub fn link_matches(reg: &Registration, link: &Link, filter: &Filter, expose_status: bool) -> bool {
    if matches!(filter.pattern, Pattern::MemberOf(_)) {
        return endpoint_own_matches(reg, filter, expose_status);
    }
    link_own_matches(reg, link, filter) || endpoint_own_matches(reg, filter, expose_status)
}

/// Attribute names an inverted index may key on.
pub const INDEXABLE: &[&str] = &["rt", "if", "rel", "ct", "et", "ep", "d"];

/// The filters an inverted index can use to pre-select registrations, as
/// `(name, value, is_prefix)`. A registration can match the query only if, for every returned
/// entry, the index holds it under `(name, value)` (or a key starting with `value` when
/// `is_prefix`). For that the index must record, per registration: `ep` and `d`; every extra
/// attribute named in `INDEXABLE` (`et`…); and every link parameter named in `INDEXABLE`, split
/// at spaces for `rt`/`if`/`rel`/`ct` (cross-matching makes link and endpoint attributes
/// interchangeable). An `rt` filter that `core.rd-ep` satisfies is left out: every endpoint
/// carries that type in endpoint lookup. An empty result means "scan all candidates". The
/// exact matchers must still run on the pre-selected set.
pub fn plan_candidates(query: &LookupQuery) -> Vec<(&str, &str, bool)> {
    query
        .filters
        .iter()
        .filter(|f| INDEXABLE.contains(&f.name.as_str()))
        .filter(|f| !(f.name == "rt" && f.pattern.matches_any_token(Some(ENDPOINT_RT))))
        .filter_map(|f| match &f.pattern {
            Pattern::Exact(v) => Some((f.name.as_str(), v.as_str(), false)),
            Pattern::Prefix(v) if !v.is_empty() => Some((f.name.as_str(), v.as_str(), true)),
            _ => None,
        })
        .collect()
}
