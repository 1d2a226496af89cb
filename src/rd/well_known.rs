//! The RD's own `/.well-known/core` (RFC 9176 §4.3, RFC 6690 §4) with query filtering
//! (RFC 6690 §4.1, which RFC 9176 §4.3 makes mandatory).
//!
//! Advertised: `/rd` (`core.rd`), `/rd-lookup/ep` (`core.rd-lookup-ep`), `/rd-lookup/res`
//! (`core.rd-lookup-res`), all `ct=40`, the lookups with `obs` since they are observable
//! (§4.3 allows the hint). With draft-11 compatibility on, also `/rd-group` (`core.rd-group`),
//! `/rd-lookup/d` (`core.rd-lookup-d`) and `/rd-lookup/gp` (`core.rd-lookup-gp`): draft-11
//! clients discover those resources only this way (draft-11 §5.2), and RFC 9176 clients are
//! unaffected because they select links by exact `rt` (a `?rt=core.rd*` answer may list more
//! links than they use, which RFC 6690 clients must tolerate anyway).
//!
//! Filtering: `?name=value` keeps links with that attribute and value, `value*` matches a
//! prefix, `rt`/`if`/`rel`/`ct` match any space-separated value, `href` matches the target as
//! written (`/rd-lookup/*`), a valueless `?obs` keeps links that have the attribute, and a link
//! lacking the attribute is excluded. RFC 6690 §4.1 defines a single filter; when several are
//! given they are ANDed (the RD's lookup rule, §6.2) rather than ignored or refused, which is the
//! only reading that never returns a link contradicting a filter. The RdServer gets `None`
//! when nothing matches and decides: 2.05 empty or 4.04 for unicast, silence for multicast.

use super::error::RdError;
use super::filter::Pattern;
use super::link_writer::{push_link, push_param};
use super::params::QueryParams;

/// One advertised link: path, `rt`, and whether it is observable.
struct Entry {
    path: &'static str,
    rt: &'static str,
    observable: bool,
    draft11: bool,
}

const ENTRIES: &[Entry] = &[
    Entry {
        path: "/rd",
        rt: "core.rd",
        observable: false,
        draft11: false,
    },
    Entry {
        path: "/rd-lookup/ep",
        rt: "core.rd-lookup-ep",
        observable: true,
        draft11: false,
    },
    Entry {
        path: "/rd-lookup/res",
        rt: "core.rd-lookup-res",
        observable: true,
        draft11: false,
    },
    Entry {
        path: "/rd-group",
        rt: "core.rd-group",
        observable: false,
        draft11: true,
    },
    Entry {
        path: "/rd-lookup/d",
        rt: "core.rd-lookup-d",
        observable: false,
        draft11: true,
    },
    Entry {
        path: "/rd-lookup/gp",
        rt: "core.rd-lookup-gp",
        observable: true,
        draft11: true,
    },
];

const CONTENT_FORMAT: &str = "40";

impl Entry {
    /// The entry's attributes as (name, value) pairs.
    fn attrs(&self) -> impl Iterator<Item = (&'static str, Option<&'static str>)> {
        [
            Some(("rt", Some(self.rt))),
            Some(("ct", Some(CONTENT_FORMAT))),
            self.observable.then_some(("obs", None)),
        ]
        .into_iter()
        .flatten()
    }

    fn matches(&self, name: &str, pattern: &Pattern) -> bool {
        if name == "href" {
            return pattern.matches(Some(self.path));
        }
        let list = matches!(name, "rt" | "if" | "rel" | "ct");
        self.attrs().any(|(n, v)| {
            n == name
                && if list {
                    pattern.matches_any_token(v)
                } else {
                    pattern.matches(v)
                }
        })
    }
}

/// The `/.well-known/core` payload for a query, or `None` when no link matches. A query item
/// with an empty name is refused with 4.00 (draft-11 §5.2 "malformed").
pub(crate) fn well_known_core<S: AsRef<str>>(
    query: &[S],
    include_draft11: bool,
) -> Result<Option<String>, RdError> {
    let params = QueryParams::parse(query)?;
    let filters: Vec<(&str, Pattern)> = params
        .items()
        .iter()
        .map(|i| (i.name.as_str(), Pattern::from_value(i.value.as_deref())))
        .collect();
    let mut out = String::new();
    for entry in ENTRIES.iter().filter(|e| include_draft11 || !e.draft11) {
        if filters.iter().all(|(n, p)| entry.matches(n, p)) {
            push_link(&mut out, entry.path, []);
            for (name, value) in entry.attrs() {
                push_param(&mut out, name, value);
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wkc(query: &[&str]) -> Option<String> {
        well_known_core(query, true).unwrap()
    }

    const RFC_ONLY: &str = "</rd>;rt=\"core.rd\";ct=40,\
</rd-lookup/ep>;rt=\"core.rd-lookup-ep\";ct=40;obs,\
</rd-lookup/res>;rt=\"core.rd-lookup-res\";ct=40;obs";

    #[test]
    fn rfc_9176_discovery_example() {
        // §4.3: GET /.well-known/core?rt=core.rd* (here without the draft-11 links).
        assert_eq!(
            well_known_core(&["rt=core.rd*"], false).unwrap().as_deref(),
            Some(RFC_ONLY)
        );
        assert_eq!(
            well_known_core::<&str>(&[], false).unwrap().as_deref(),
            Some(RFC_ONLY)
        );
    }

    #[test]
    fn rt_filters() {
        assert_eq!(
            wkc(&["rt=core.rd"]).as_deref(),
            Some("</rd>;rt=\"core.rd\";ct=40")
        );
        assert_eq!(
            wkc(&["rt=core.rd-lookup-ep"]).as_deref(),
            Some("</rd-lookup/ep>;rt=\"core.rd-lookup-ep\";ct=40;obs")
        );
        let lookups = wkc(&["rt=core.rd-lookup*"]).unwrap();
        assert_eq!(lookups.matches('<').count(), 4, "{lookups}");
        assert!(lookups.contains("</rd-lookup/d>;rt=\"core.rd-lookup-d\";ct=40"));
        assert!(lookups.contains("</rd-lookup/gp>;rt=\"core.rd-lookup-gp\";ct=40;obs"));
        assert_eq!(wkc(&["rt=core.rd*"]).unwrap().matches('<').count(), 6);
        assert_eq!(
            wkc(&["rt=core.rd-group"]).as_deref(),
            Some("</rd-group>;rt=\"core.rd-group\";ct=40")
        );
        assert_eq!(wkc(&["rt=temperature"]), None);
        assert_eq!(well_known_core(&["rt=core.rd-group"], false).unwrap(), None);
    }

    #[test]
    fn other_attributes_href_and_absent_attributes() {
        assert_eq!(
            wkc(&["href=/rd"]).as_deref(),
            Some("</rd>;rt=\"core.rd\";ct=40")
        );
        assert_eq!(wkc(&["href=/rd-lookup/*"]).unwrap().matches('<').count(), 4);
        assert_eq!(wkc(&["ct=40"]).unwrap().matches('<').count(), 6);
        assert_eq!(wkc(&["ct=4*"]).unwrap().matches('<').count(), 6);
        assert_eq!(wkc(&["ct=0"]), None);
        assert_eq!(wkc(&["obs"]).unwrap().matches('<').count(), 3);
        // A filter on an attribute no link has excludes every link.
        assert_eq!(wkc(&["if=sensor"]), None);
        assert_eq!(wkc(&["rel=impl-info"]), None);
    }

    #[test]
    fn several_filters_are_anded() {
        assert_eq!(
            wkc(&["rt=core.rd*", "href=/rd-lookup/res"]).as_deref(),
            Some("</rd-lookup/res>;rt=\"core.rd-lookup-res\";ct=40;obs")
        );
        assert_eq!(wkc(&["rt=core.rd", "obs"]), None);
    }

    #[test]
    fn malformed_query_is_4_00() {
        assert_eq!(well_known_core(&["=x"], true).unwrap_err().code(), (4, 0));
    }
}
