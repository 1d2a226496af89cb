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

use std::collections::BTreeSet;

use super::error::RdError;
use super::params::QueryParams;
use super::resolve::{path_of, resolve, resolved_target};
use crate::registry::index::Index;
use crate::registry::model::{EndpointName, Registration, RegistrationId, Sector};
use link_format::Link;

/// The resource type of registration resources in endpoint lookup (RFC 9176 §6.4, §9.1).
pub(crate) const ENDPOINT_RT: &str = "core.rd-ep";

/// Attributes whose value is a space-separated list.
const LIST_ATTRS: &[&str] = &["rt", "if", "rel", "ct"];

/// What a filter requires of an attribute's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
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
    pub(crate) fn from_value(value: Option<&str>) -> Pattern {
        match value {
            None => Pattern::Present,
            Some(v) => match v.strip_suffix('*') {
                Some(prefix) => Pattern::Prefix(prefix.to_string()),
                None => Pattern::Exact(v.to_string()),
            },
        }
    }

    /// Whether an attribute value (absent for a valueless attribute) satisfies the pattern.
    pub(crate) fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Pattern::Present, _) => true,
            (Pattern::Exact(want), Some(v)) => v == want,
            (Pattern::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            _ => false,
        }
    }

    /// Like `matches`, for a space-separated list: any element may match.
    pub(crate) fn matches_any_token(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Pattern::Present, _) => true,
            (_, Some(v)) => v.split(' ').any(|t| self.matches(Some(t))),
            _ => false,
        }
    }
}

/// One search criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub name: String,
    pub pattern: Pattern,
}

/// A parsed lookup query: filters (ANDed) and paging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LookupQuery {
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
    pub(crate) fn parse<S: AsRef<str>>(query: &[S]) -> Result<LookupQuery, RdError> {
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
    pub(crate) fn window(&self) -> (usize, Option<usize>) {
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
    pub(crate) fn matches_endpoint(&self, reg: &Registration, expose_status: bool) -> bool {
        self.filters
            .iter()
            .all(|f| endpoint_matches(reg, f, expose_status))
    }

    /// Resource lookup: every filter matches the link (with cross-matching).
    pub(crate) fn matches_link(
        &self,
        reg: &Registration,
        link: &Link,
        expose_status: bool,
    ) -> bool {
        self.filters
            .iter()
            .all(|f| link_matches(reg, link, f, expose_status))
    }

    /// draft-11 `gp=…` on endpoint and resource lookup (draft-11 §7: "endpoints in a particular
    /// group"): replaces each `gp` filter by the members of the matching groups. `groups` are
    /// the group registrations (see `group`); call before matching. Without this call `gp` is an
    /// ordinary attribute filter.
    pub(crate) fn bind_groups<'a>(
        &mut self,
        groups: impl IntoIterator<Item = &'a Registration> + Clone,
    ) {
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
        // draft-11 clients name the base `con`.
        "base" | "con" => p.matches(Some(&reg.base)),
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
pub(crate) fn endpoint_matches(reg: &Registration, filter: &Filter, expose_status: bool) -> bool {
    endpoint_own_matches(reg, filter, expose_status)
        || (!matches!(filter.pattern, Pattern::MemberOf(_))
            && reg.links.iter().any(|l| link_own_matches(reg, l, filter)))
}

/// Whether a resource link satisfies one filter: its own attributes, or its endpoint's
/// (cross-matching, §6.2). Sibling links do not count.
pub(crate) fn link_matches(
    reg: &Registration,
    link: &Link,
    filter: &Filter,
    expose_status: bool,
) -> bool {
    if matches!(filter.pattern, Pattern::MemberOf(_)) {
        return endpoint_own_matches(reg, filter, expose_status);
    }
    link_own_matches(reg, link, filter) || endpoint_own_matches(reg, filter, expose_status)
}

/// Attribute names an inverted index may key on.
pub(crate) const INDEXABLE: &[&str] = &["rt", "if", "rel", "ct", "et", "ep", "d"];

/// The filters an inverted index can use to pre-select registrations for endpoint, resource and
/// domain lookups, as `(name, value, is_prefix)`. A registration can match the query only if,
/// for every returned entry, it has an attribute `name` equal to `value` (starting with `value`
/// when `is_prefix`; for `rt`/`if`/`rel`/`ct` one of its space-separated values) **at either
/// level**: its endpoint attributes (`ep`, `d`, extra attributes such as `et`) or any of its
/// links' parameters, because cross-matching (§6.2) makes the two interchangeable. So the
/// candidates for one entry are the union of the link-attribute and endpoint-attribute index
/// hits; the registrations to check are the intersection over all entries. An index that covers
/// only one level for a name (say link `rt` but not an endpoint extra attribute `rt`) misses the
/// rare registrations with the name at the other level. An `rt` filter that `core.rd-ep`
/// satisfies is left out: every endpoint carries that type. An empty plan means "check every
/// candidate". The exact matchers run on the pre-selected set in all cases. Not for draft-11
/// group lookup, where `ep` names a member (pre-select with `et=core.rd-group` there).
pub(crate) fn plan_candidates(query: &LookupQuery) -> Vec<(&str, &str, bool)> {
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

/// Registrations that the inverted index pre-selects for a query: the intersection, over the
/// indexable filters, of the links and endpoints having that attribute value (the union of both
/// levels, because of cross-matching, RFC 9176 §6.2; the registry indexes every such name at
/// both levels). `None` when no filter is indexable: the caller scans. The exact matchers always
/// run on the result, so the pre-selection only has to be a superset.
pub(crate) fn candidate_ids(idx: &Index, query: &LookupQuery) -> Option<BTreeSet<RegistrationId>> {
    let mut acc: Option<BTreeSet<RegistrationId>> = None;
    for (name, value, prefix) in plan_candidates(query) {
        // The index keys are single words; a value with whitespace could only be matched
        // whole, which the word index cannot pre-select soundly.
        if value.contains(char::is_whitespace) {
            continue;
        }
        let set = match (
            idx.ids_with_link_attr(name, value, prefix),
            idx.ids_with_endpoint_attr(name, value, prefix),
        ) {
            (None, None) => continue,
            (Some(s), None) | (None, Some(s)) => s,
            (Some(a), Some(b)) => &a | &b,
        };
        acc = Some(match acc {
            None => set,
            Some(prev) => &prev & &set,
        });
        if acc.as_ref().is_some_and(BTreeSet::is_empty) {
            break;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rd::fixtures::{reg, rfc6690_example_links};
    use crate::registry::model::Status;

    fn q(items: &[&str]) -> LookupQuery {
        LookupQuery::parse(items).unwrap()
    }

    fn filter(item: &str) -> Filter {
        q(&[item]).filters.remove(0)
    }

    #[test]
    fn parses_filters_and_paging() {
        let query = q(&["rt=temp*", "page=1", "obs", "count=2", "ep=node1"]);
        assert_eq!(query.page, Some(1));
        assert_eq!(query.count, Some(2));
        assert_eq!(
            query.filters,
            vec![
                Filter {
                    name: "rt".into(),
                    pattern: Pattern::Prefix("temp".into())
                },
                Filter {
                    name: "obs".into(),
                    pattern: Pattern::Present
                },
                Filter {
                    name: "ep".into(),
                    pattern: Pattern::Exact("node1".into())
                },
            ]
        );
        assert_eq!(query.window(), (2, Some(2)));
        assert_eq!(q(&["count=5"]).window(), (0, Some(5)));
        assert_eq!(q(&[]).window(), (0, None));
        assert_eq!(
            q(&["page=18446744073709551615", "count=3"]).window().0,
            usize::MAX
        );
    }

    #[test]
    fn bad_paging_is_4_00() {
        assert_eq!(
            LookupQuery::parse(&["page=1"]).unwrap_err(),
            RdError::PageWithoutCount
        );
        for bad in [
            &["count=-1"][..],
            &["count=x"],
            &["count="],
            &["count"],
            &["page=-1", "count=2"],
            &["page=1.5", "count=2"],
            &["page", "count=2"],
            &["count=1", "count=2"],
            &["page=1", "page=1", "count=2"],
        ] {
            assert_eq!(
                LookupQuery::parse(bad).unwrap_err().code(),
                (4, 0),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn patterns() {
        assert!(Pattern::Exact("a".into()).matches(Some("a")));
        assert!(!Pattern::Exact("a".into()).matches(Some("ab")));
        assert!(!Pattern::Exact("a".into()).matches(None));
        assert!(Pattern::Prefix("a".into()).matches(Some("ab")));
        assert!(Pattern::Prefix("".into()).matches(Some("")));
        assert!(Pattern::Present.matches(None));
        // §6.2: `?if=tag:example.net,2020:sensor` matches
        // `if="example.regname tag:example.net,2020:sensor"`.
        assert!(filter("if=tag:example.net,2020:sensor")
            .pattern
            .matches_any_token(Some("example.regname tag:example.net,2020:sensor")));
        assert!(!Pattern::Exact("a b".into()).matches_any_token(Some("a b")));
    }

    #[test]
    fn endpoint_attributes() {
        let r = reg(17, "node1", "coap://[2001:db8:3::101]")
            .d("floor-3")
            .attr("et", Some("oic.d.sensor"))
            .attr("et", Some("core.rd-group"))
            .attr("flag", None)
            .build();
        let yes = |item: &str| endpoint_matches(&r, &filter(item), false);
        assert!(yes("ep=node1"));
        assert!(yes("ep=node*"));
        assert!(!yes("ep=node2"));
        assert!(yes("d=floor-3"));
        assert!(yes("base=coap://[2001:db8:3::101]"));
        assert!(yes("base=coap://*"));
        assert!(yes("con=coap://[2001:db8:3::101]"));
        assert!(yes("et=oic.d.sensor"));
        assert!(yes("et=core.rd-group"));
        assert!(!yes("et=oic.d"), "et is not a space-separated list");
        assert!(yes("flag"));
        assert!(!yes("flag=x"));
        assert!(yes("rt=core.rd-ep"));
        assert!(!yes("lt=90000"), "lt is not exposed (§6.4)");
        assert!(!yes("lt"));
        assert!(yes("href=/reg/17"));
        assert!(yes("href=coap://rd.example.com/reg/17"));
        assert!(yes("href=/reg/1*"));
        assert!(!yes("href=/reg/1"));
        assert!(!yes("unknown"));
        let no_sector = reg(1, "n", "coap://h").build();
        assert!(!endpoint_matches(&no_sector, &filter("d=*"), false));
    }

    #[test]
    fn status_only_when_exposed() {
        let up = reg(1, "a", "coap://h").build();
        let down = reg(2, "b", "coap://h").status(Status::Disconnected).build();
        assert!(endpoint_matches(&up, &filter("status=1"), true));
        assert!(!endpoint_matches(&down, &filter("status=1"), true));
        assert!(endpoint_matches(&down, &filter("status=0"), true));
        assert!(!endpoint_matches(&up, &filter("status=1"), false));
    }

    #[test]
    fn link_attributes_href_and_anchor() {
        let r = reg(1, "sensor1", "coap://sensor1.example.com")
            .link(Link::new("/x").with("obs", None).with("sz", Some("12")))
            .build();
        let links = rfc6690_example_links();
        let hit = |i: usize, item: &str| link_matches(&r, &links[i], &filter(item), false);
        assert!(hit(1, "rt=temperature-c"));
        assert!(hit(1, "rt=temp*"));
        assert!(!hit(2, "rt=temp*"));
        assert!(hit(0, "ct=40"));
        assert!(hit(0, "title=Sensor Index"));
        assert!(hit(3, "rel=describedby"));
        // href: the resolved target, in URI form (§6.2).
        assert!(hit(1, "href=coap://sensor1.example.com/sensors/temp"));
        assert!(hit(4, "href=coap://sensor1.example.com/t"));
        assert!(hit(3, "href=http://www.example.com/*"));
        assert!(
            !hit(1, "href=/sensors/temp"),
            "relative hrefs are not URI form"
        );
        // anchor: resolved, and only links that have one.
        assert!(hit(3, "anchor=coap://sensor1.example.com/sensors/temp"));
        assert!(hit(4, "anchor=coap://sensor1.example.com/sensors/*"));
        assert!(!hit(1, "anchor=coap://sensor1.example.com"));
        assert!(!hit(1, "anchor"));
        assert!(hit(3, "anchor"));
        assert!(link_matches(&r, &r.links[0], &filter("obs"), false));
        assert!(link_matches(&r, &r.links[0], &filter("sz=12"), false));
        assert!(!hit(1, "obs"));
    }

    #[test]
    fn cross_matching() {
        let node1 = reg(1, "node1", "coap://[2001:db8:3::101]")
            .attr("et", Some("oic.d.sensor"))
            .link(Link::new("/temp").with("rt", Some("temperature")))
            .link(
                Link::new("/light")
                    .with("rt", Some("light-lux"))
                    .with("if", Some("sensor")),
            )
            .build();
        // A link matches through its endpoint's attributes.
        for item in [
            "ep=node1",
            "et=oic.d.sensor",
            "base=coap://[2001:db8:3::101]",
            "href=/reg/1",
        ] {
            assert!(
                link_matches(&node1, &node1.links[0], &filter(item), false),
                "{item}"
            );
        }
        // An endpoint matches through any of its links.
        assert!(endpoint_matches(&node1, &filter("rt=temperature"), false));
        assert!(endpoint_matches(&node1, &filter("if=sensor"), false));
        assert!(endpoint_matches(
            &node1,
            &filter("href=coap://[2001:db8:3::101]/light"),
            false
        ));
        assert!(!endpoint_matches(&node1, &filter("rt=humidity"), false));
        // Sibling links do not count for a link.
        assert!(!link_matches(
            &node1,
            &node1.links[0],
            &filter("if=sensor"),
            false
        ));
        // Each filter is judged alone: rt from one link, if from another.
        let query = q(&["rt=temperature", "if=sensor"]);
        assert!(query.matches_endpoint(&node1, false));
        assert!(!query.matches_link(&node1, &node1.links[0], false));
        assert!(!query.matches_link(&node1, &node1.links[1], false));
        assert!(q(&["ep=node1", "rt=light*"]).matches_link(&node1, &node1.links[1], false));
    }

    #[test]
    fn plan_uses_indexable_exact_and_prefix_filters() {
        let query = q(&[
            "rt=temperature",
            "href=/reg/1",
            "et=oic.d.*",
            "obs",
            "ep=dev-123",
            "page=0",
            "count=10",
            "if=*",
            "title=x",
        ]);
        assert_eq!(
            plan_candidates(&query),
            vec![
                ("rt", "temperature", false),
                ("et", "oic.d.", true),
                ("ep", "dev-123", false),
            ]
        );
        // Every endpoint is rt=core.rd-ep, so such a filter pre-selects nothing.
        assert!(plan_candidates(&q(&["rt=core.rd-ep"])).is_empty());
        assert!(plan_candidates(&q(&["rt=core.*"])).is_empty());
    }
}
