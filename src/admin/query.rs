//! Query strings of the device API, turned into the RD's own lookup filters (RFC 9176 §6.2)
//! and paging. Pure: called by `handlers` with the raw query string.
//!
//! The filter syntax is the RD's: `name=value`, `name=prefix*`, a bare `name` for "present",
//! cross-matching between endpoint and link attributes, `status=0|1` always allowed. Parsing and
//! matching reuse `rd::params` and `rd::filter`, so the two interfaces cannot drift apart.
//! What HTTP adds: the query string is percent-decoded (`+` is a space, as browsers send
//! forms), and paging has defaults: `page` (from 0) alone is fine, `count` defaults to
//! [`DEFAULT_COUNT`] and may not exceed [`MAX_COUNT`]. For the operator console (issue 24):
//! `q`, a case-insensitive substring of the endpoint name or sector (what a person types in a
//! search box, which the RD's prefix filters do not cover), and `sort` ([`SortKey`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use percent_encoding::percent_decode_str;

use super::error::ApiError;
use crate::rd::error::RdError;
use crate::rd::filter::{candidate_ids, LookupQuery};
use crate::rd::params::QueryParams;
use crate::registry::index::Index;
use crate::registry::model::{EndpointName, Registration, RegistrationId, Sector};

/// Devices per page when the request does not say.
pub(crate) const DEFAULT_COUNT: u64 = 100;
/// The largest page: one page of JSON stays well under a megabyte.
pub(crate) const MAX_COUNT: u64 = 1000;

/// The status attribute is always filterable here: operators want "every device that is down".
const EXPOSE_STATUS: bool = true;

/// How a device list is ordered: by a column, ascending or (`-` in front) descending; ties,
/// and the default, in registration id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SortKey {
    #[default]
    Id,
    Ep,
    Sector,
    Status,
    Registered,
    Updated,
    Expires,
}

impl SortKey {
    const NAMES: [(&'static str, SortKey); 7] = [
        ("id", SortKey::Id),
        ("ep", SortKey::Ep),
        ("d", SortKey::Sector),
        ("status", SortKey::Status),
        ("registered", SortKey::Registered),
        ("updated", SortKey::Updated),
        ("expires", SortKey::Expires),
    ];

    /// `ep`, `-ep`, ...: the key and whether it is descending.
    fn parse(value: &str) -> Result<(SortKey, bool), ApiError> {
        let (name, descending) = match value.strip_prefix('-') {
            Some(name) => (name, true),
            None => (value, false),
        };
        SortKey::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, key)| (*key, descending))
            .ok_or_else(|| {
                let names: Vec<&str> = SortKey::NAMES.iter().map(|(n, _)| *n).collect();
                ApiError::bad_parameter(
                    "sort",
                    format!(
                        "sort must be one of {} (a leading - for descending), not {value:?}",
                        names.join(", ")
                    ),
                )
            })
    }

    fn compare(self, a: &Registration, b: &Registration) -> std::cmp::Ordering {
        let by_key = match self {
            SortKey::Id => std::cmp::Ordering::Equal,
            SortKey::Ep => a.ep.as_str().cmp(b.ep.as_str()),
            SortKey::Sector => {
                a.d.as_ref()
                    .map(|d| d.as_str())
                    .cmp(&b.d.as_ref().map(|d| d.as_str()))
            }
            SortKey::Status => (a.status as u8).cmp(&(b.status as u8)),
            SortKey::Registered => a.registered_at_ms.cmp(&b.registered_at_ms),
            SortKey::Updated => a.updated_at_ms.cmp(&b.updated_at_ms),
            SortKey::Expires => a.expires_at_ms.cmp(&b.expires_at_ms),
        };
        by_key.then(a.id.cmp(&b.id))
    }
}

/// A parsed `GET /api/devices` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceQuery {
    /// The RD filters (its own `page`/`count` unset).
    pub lookup: LookupQuery,
    /// `q`, lower-cased: a substring of the endpoint name or the sector.
    pub search: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    /// Page number, from 0.
    pub page: u64,
    /// Devices per page, 1..=[`MAX_COUNT`].
    pub count: u64,
}

/// Split a raw query string into decoded `name[=value]` items; empty items (`a&&b`) are
/// skipped. An item that is not valid UTF-8 once decoded is refused, naming it.
pub(crate) fn decode_query_string(raw: &str) -> Result<Vec<String>, ApiError> {
    raw.split('&')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let spaced = item.replace('+', " ");
            percent_decode_str(&spaced)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| {
                    ApiError::bad_parameter(item, "the query item is not UTF-8 once decoded")
                })
        })
        .collect()
}

/// The name of a decoded query item (up to its first `=`).
fn item_name(item: &str) -> &str {
    item.split_once('=').map_or(item, |(name, _)| name)
}

/// An RD parse error as a 400 naming the parameter at fault.
fn rd_error(e: RdError, items: &[String]) -> ApiError {
    let parameter = match &e {
        RdError::RepeatedParam(name) | RdError::ValuelessParam(name) => name.clone(),
        RdError::InvalidPaging { param, .. } => (*param).to_string(),
        RdError::MissingParam(name) => (*name).to_string(),
        RdError::InvalidName { param, .. } => (*param).to_string(),
        // The item itself is the best name an empty-named item has.
        RdError::EmptyParamName => items
            .iter()
            .find(|i| item_name(i).is_empty())
            .cloned()
            .unwrap_or_default(),
        _ => "query".to_string(),
    };
    ApiError::bad_parameter(parameter, e.to_string())
}

/// `page` or `count`: a single non-negative decimal integer.
fn paging(params: &QueryParams, name: &'static str) -> Result<Option<u64>, ApiError> {
    let Some(value) = params
        .single(name)
        .map_err(|e| ApiError::bad_parameter(name, e.to_string()))?
    else {
        return Ok(None);
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_parameter(
            name,
            format!("{name} must be a non-negative integer, not {value:?}"),
        ));
    }
    value
        .parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::bad_parameter(name, format!("{name} {value:?} is too large")))
}

impl DeviceQuery {
    /// Parse a raw (still percent-encoded) query string.
    pub(crate) fn parse(raw: &str) -> Result<DeviceQuery, ApiError> {
        let items = decode_query_string(raw)?;
        let params = QueryParams::parse(&items).map_err(|e| rd_error(e, &items))?;
        let page = paging(&params, "page")?.unwrap_or(0);
        let count = paging(&params, "count")?.unwrap_or(DEFAULT_COUNT);
        if count == 0 || count > MAX_COUNT {
            return Err(ApiError::bad_parameter(
                "count",
                format!("count must be in 1..={MAX_COUNT}, not {count}"),
            ));
        }
        let search = params
            .single("q")
            .map_err(|e| ApiError::bad_parameter("q", e.to_string()))?
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        let (sort, descending) = match params
            .single("sort")
            .map_err(|e| ApiError::bad_parameter("sort", e.to_string()))?
        {
            Some(value) => SortKey::parse(value)?,
            None => (SortKey::Id, false),
        };
        let filters: Vec<&String> = items
            .iter()
            .filter(|i| !matches!(item_name(i), "page" | "count" | "q" | "sort"))
            .collect();
        let lookup = LookupQuery::parse(&filters).map_err(|e| rd_error(e, &items))?;
        Ok(DeviceQuery {
            lookup,
            search,
            sort,
            descending,
            page,
            count,
        })
    }

    /// Whether answering needs every match at once (a sort) or a check the index cannot
    /// pre-select (the search): then the candidates are copied out of the index first.
    pub(crate) fn sorts_or_searches(&self) -> bool {
        self.sort != SortKey::Id || self.descending || self.search.is_some()
    }

    /// Whether `reg` matches the filters and the search.
    fn matches(&self, reg: &Registration) -> bool {
        self.lookup.matches_endpoint(reg, EXPOSE_STATUS)
            && self.search.as_ref().is_none_or(|q| {
                contains_folded(reg.ep.as_str(), q)
                    || reg
                        .d
                        .as_ref()
                        .is_some_and(|d| contains_folded(d.as_str(), q))
            })
    }

    /// The registrations the index pre-selects for the filters (a superset of the matches, in
    /// id order), or `None` when no filter is indexable and every live registration must be
    /// checked: exactly the RD lookups' plan (`rd::filter::candidate_ids`). [`Self::select`]
    /// still runs the exact matchers.
    pub(crate) fn candidate_ids(&self, idx: &Index) -> Option<BTreeSet<RegistrationId>> {
        candidate_ids(idx, &self.lookup)
    }

    /// The matching registrations among `candidates` (in the order given) and the page asked
    /// for: `(total matches, the page's registrations)`.
    pub(crate) fn select<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a Arc<Registration>>,
    ) -> (u64, Vec<Arc<Registration>>) {
        let skip = self.page.saturating_mul(self.count);
        if self.sort != SortKey::Id || self.descending {
            let mut matches: Vec<&Arc<Registration>> =
                candidates.into_iter().filter(|r| self.matches(r)).collect();
            let (key, descending) = (self.sort, self.descending);
            // Unstable is enough: the id breaks every tie.
            matches.sort_unstable_by(|a, b| {
                let order = key.compare(a, b);
                if descending {
                    order.reverse()
                } else {
                    order
                }
            });
            let total = matches.len() as u64;
            let page = matches
                .into_iter()
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                .take(usize::try_from(self.count).unwrap_or(usize::MAX))
                .cloned()
                .collect();
            return (total, page);
        }
        let mut total = 0u64;
        let mut page = Vec::new();
        for reg in candidates {
            if !self.matches(reg) {
                continue;
            }
            if total >= skip && (page.len() as u64) < self.count {
                page.push(Arc::clone(reg));
            }
            total += 1;
        }
        (total, page)
    }
}

/// Whether `text` contains `lower` (already lower-case), ignoring case.
fn contains_folded(text: &str, lower: &str) -> bool {
    if text.is_ascii() && lower.is_ascii() {
        text.as_bytes()
            .windows(lower.len().max(1))
            .any(|w| w.eq_ignore_ascii_case(lower.as_bytes()))
    } else {
        text.to_lowercase().contains(lower)
    }
}

/// How many live devices are connected and disconnected (the console's counts at the top).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct StatusCounts {
    pub all: u64,
    pub connected: u64,
    pub disconnected: u64,
}

impl StatusCounts {
    pub(crate) fn of<'a>(live: impl IntoIterator<Item = &'a Arc<Registration>>) -> StatusCounts {
        let mut counts = StatusCounts::default();
        live.into_iter().for_each(|reg| counts.add(reg));
        counts
    }

    /// Count one more live registration.
    pub(crate) fn add(&mut self, reg: &Registration) {
        self.all += 1;
        match reg.status {
            crate::registry::model::Status::Connected => self.connected += 1,
            crate::registry::model::Status::Disconnected => self.disconnected += 1,
        }
    }
}

/// `GET /api/devices/{ep}[?d=sector]`: which registration is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceSelector {
    pub ep: EndpointName,
    /// `None` (no `d`, or `d=`): the registration without a sector.
    pub d: Option<Sector>,
}

impl DeviceSelector {
    /// `ep` is the (already decoded) path segment; `raw_query` may only carry `d`.
    pub(crate) fn parse(ep: &str, raw_query: &str) -> Result<DeviceSelector, ApiError> {
        let ep = EndpointName::new(ep)
            .map_err(|e| ApiError::bad_parameter("ep", format!("invalid ep: {e}")))?;
        let items = decode_query_string(raw_query)?;
        let params = QueryParams::parse(&items).map_err(|e| rd_error(e, &items))?;
        if let Some(other) = params.others(&["d"]).next() {
            return Err(ApiError::bad_parameter(
                other.name.clone(),
                format!(
                    "unknown parameter {:?}: only d is accepted here",
                    other.name
                ),
            ));
        }
        let d = params
            .single("d")
            .map_err(|e| ApiError::bad_parameter("d", e.to_string()))?
            .filter(|d| !d.is_empty())
            .map(|d| {
                Sector::new(d).map_err(|e| ApiError::bad_parameter("d", format!("invalid d: {e}")))
            })
            .transpose()?;
        Ok(DeviceSelector { ep, d })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::{BaseOrigin, RegistrationId, Status};
    use link_format::{Link, Param};

    fn reg(id: u64, ep: &str, status: Status, rt: &str) -> Arc<Registration> {
        Arc::new(Registration {
            status_history: Default::default(),
            last_seen: Default::default(),
            identity: None,
            id: RegistrationId(id),
            ep: EndpointName::new(ep).unwrap(),
            d: None,
            base: format!("coap://127.0.0.1:{}", 40000 + id).into(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 60,
            attrs: vec![Param::new("et", Some("sensor"))],
            links: vec![Link::new("/sensors/temp").with("rt", Some(rt))].into(),
            status,
            registered_at_ms: 1,
            updated_at_ms: 2,
            expires_at_ms: u64::MAX,
            source: format!("127.0.0.1:{}", 40000 + id).parse().unwrap(),
        })
    }

    fn fleet() -> Vec<Arc<Registration>> {
        (1..=7)
            .map(|i| {
                let status = if i % 3 == 0 {
                    Status::Disconnected
                } else {
                    Status::Connected
                };
                let rt = if i % 2 == 0 { "temperature" } else { "light" };
                reg(i, &format!("node{i}"), status, rt)
            })
            .collect()
    }

    fn eps(regs: &[Arc<Registration>]) -> Vec<&str> {
        regs.iter().map(|r| r.ep.as_str()).collect()
    }

    #[test]
    fn defaults_to_the_first_page_of_default_count() {
        let q = DeviceQuery::parse("").unwrap();
        assert_eq!((q.page, q.count), (0, DEFAULT_COUNT));
        assert!(q.lookup.filters.is_empty());
        let (total, page) = q.select(&fleet());
        assert_eq!(total, 7);
        assert_eq!(page.len(), 7);
    }

    #[test]
    fn search_finds_a_substring_of_the_name_or_sector_in_any_case() {
        let mut regs = fleet();
        let mut odd = (*reg(8, "Kitchen-Light", Status::Connected, "light")).clone();
        odd.d = Some(Sector::new("Floor2").unwrap());
        regs.push(Arc::new(odd));
        let q = DeviceQuery::parse("q=DE3").unwrap();
        assert_eq!(eps(&q.select(&regs).1), ["node3"]);
        let q = DeviceQuery::parse("q=+kitchen+").unwrap();
        assert_eq!(
            eps(&q.select(&regs).1),
            ["Kitchen-Light"],
            "trimmed, any case"
        );
        let q = DeviceQuery::parse("q=floor").unwrap();
        assert_eq!(
            eps(&q.select(&regs).1),
            ["Kitchen-Light"],
            "the sector counts"
        );
        // With RD filters and paging: both apply.
        let q = DeviceQuery::parse("q=node&status=0&count=1&page=1").unwrap();
        assert_eq!(q.select(&regs), (2, vec![Arc::clone(&regs[5])]));
        let q = DeviceQuery::parse("q=%C3%BC").unwrap();
        assert_eq!(q.select(&regs).0, 0, "non-ASCII searched too");
        assert!(DeviceQuery::parse("q=").unwrap().search.is_none());
    }

    #[test]
    fn sort_orders_by_a_column_either_way_with_ties_by_id() {
        let mut regs = fleet();
        regs.reverse();
        let q = DeviceQuery::parse("sort=ep").unwrap();
        assert_eq!(eps(&q.select(&regs).1)[..3], ["node1", "node2", "node3"]);
        let q = DeviceQuery::parse("sort=-ep&count=2").unwrap();
        assert_eq!(
            q.select(&regs),
            (7, vec![Arc::clone(&regs[0]), Arc::clone(&regs[1])])
        );
        // Status ascending: the disconnected (node3, node6) first, each tie by id.
        let q = DeviceQuery::parse("sort=status").unwrap();
        assert_eq!(
            eps(&q.select(&regs).1),
            ["node3", "node6", "node1", "node2", "node4", "node5", "node7"]
        );
        let q = DeviceQuery::parse("sort=id").unwrap();
        assert_eq!(
            eps(&q.select(&regs).1)[0],
            "node7",
            "id order is the order given"
        );
        let e = DeviceQuery::parse("sort=colour").unwrap_err();
        assert!(format!("{e:?}").contains("sort"), "{e:?}");
    }

    #[test]
    fn counts_are_by_status() {
        assert_eq!(
            StatusCounts::of(&fleet()),
            StatusCounts {
                all: 7,
                connected: 5,
                disconnected: 2
            }
        );
    }

    #[test]
    fn pages_count_matches_not_candidates() {
        let q = DeviceQuery::parse("status=1&count=2&page=1").unwrap();
        let (total, page) = q.select(&fleet());
        // Connected: node1, node2, node4, node5, node7.
        assert_eq!(total, 5);
        assert_eq!(eps(&page), ["node4", "node5"]);
        let last = DeviceQuery::parse("status=1&count=2&page=2").unwrap();
        assert_eq!(eps(&last.select(&fleet()).1), ["node7"]);
        let beyond = DeviceQuery::parse("status=1&count=2&page=9").unwrap();
        assert_eq!(beyond.select(&fleet()), (5, vec![]));
    }

    #[test]
    fn filters_use_the_rd_syntax_with_cross_matching_and_prefixes() {
        let q = DeviceQuery::parse("rt=temp*&ep=node%32").unwrap();
        assert_eq!(eps(&q.select(&fleet()).1), ["node2"]);
        let q = DeviceQuery::parse("et=sensor&status=0").unwrap();
        assert_eq!(eps(&q.select(&fleet()).1), ["node3", "node6"]);
        // A bare name: the attribute is present.
        let q = DeviceQuery::parse("rt").unwrap();
        assert_eq!(q.select(&fleet()).0, 7);
    }

    #[test]
    fn index_preselection_is_a_superset_and_select_agrees_with_a_full_scan() {
        let mut idx = Index::new();
        for reg in fleet() {
            idx.insert(reg);
        }
        let all: Vec<Arc<Registration>> = idx.live(0).cloned().collect();
        for raw in [
            "ep=node3",
            "rt=temp*",
            "rt=light&status=1",
            "et=sensor",
            "ep=node3&rt=light",
            "ep=nobody",
            "status=0",
        ] {
            let q = DeviceQuery::parse(raw).unwrap();
            let full = q.select(&all);
            let narrowed = match q.candidate_ids(&idx) {
                Some(ids) => {
                    let regs: Vec<Arc<Registration>> =
                        ids.iter().filter_map(|id| idx.get(*id)).cloned().collect();
                    q.select(&regs)
                }
                None => full.clone(),
            };
            assert_eq!(narrowed, full, "{raw}");
        }
        // Indexable filters pre-select; `status` is not indexed.
        let q = DeviceQuery::parse("ep=node3").unwrap();
        assert_eq!(q.candidate_ids(&idx).unwrap().len(), 1);
        assert!(DeviceQuery::parse("status=0")
            .unwrap()
            .candidate_ids(&idx)
            .is_none());
    }

    #[test]
    fn plus_and_percent_escapes_are_decoded() {
        assert_eq!(
            decode_query_string("a=x+y&b=%2A&&c").unwrap(),
            ["a=x y", "b=*", "c"]
        );
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        let cases = [
            ("count=0", "count"),
            ("count=1001", "count"),
            ("count=abc", "count"),
            ("page=-1", "page"),
            ("page=1&page=2", "page"),
            ("count", "count"),
            ("page=99999999999999999999999", "page"),
            ("=x", "=x"),
            ("ep=%FF", "ep=%FF"),
        ];
        for (raw, parameter) in cases {
            let e = DeviceQuery::parse(raw).unwrap_err();
            assert_eq!(e.status, 400, "{raw}");
            assert_eq!(e.parameter.as_deref(), Some(parameter), "{raw}: {e}");
        }
    }

    #[test]
    fn the_device_selector_takes_only_a_sector() {
        let s = DeviceSelector::parse("node1", "d=floor%201").unwrap();
        assert_eq!(s.ep.as_str(), "node1");
        assert_eq!(s.d.unwrap().as_str(), "floor 1");
        assert_eq!(DeviceSelector::parse("node1", "").unwrap().d, None);
        assert_eq!(
            DeviceSelector::parse("node1", "d=").unwrap().d,
            None,
            "no sector"
        );
        let e = DeviceSelector::parse("node1", "x=1").unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("x"));
        let e = DeviceSelector::parse("node1", "d=a&d=b").unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("d"));
    }
}
