//! Which RD resource a request path names (RFC 9176 §4.3, §5, §6; draft-11 §5–§7). Pure.
//!
//! The paths are the ones `/.well-known/core` advertises; a registration resource is
//! `/reg/<id>` (draft-11 groups are registrations too, see `group`).

use crate::registry::RegistrationId;

/// An RD resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    /// `/.well-known/core`: discovery (RFC 6690 §4, RFC 9176 §4.3); POST = draft-11 simple
    /// registration.
    WellKnownCore,
    /// `/.well-known/rd`: simple registration (RFC 9176 §5.1).
    WellKnownRd,
    /// `/rd`: the registration interface (§5).
    Directory,
    /// `/rd-group`: draft-11 group registration.
    GroupDirectory,
    /// `/reg/<id>`: a registration resource (§5.3).
    Registration(RegistrationId),
    LookupEndpoints,
    LookupResources,
    /// draft-11 domain lookup.
    LookupDomains,
    /// draft-11 group lookup.
    LookupGroups,
    NotFound,
}

pub(crate) fn route(path: &[String]) -> Route {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [".well-known", "core"] => Route::WellKnownCore,
        [".well-known", "rd"] => Route::WellKnownRd,
        ["rd"] => Route::Directory,
        ["rd-group"] => Route::GroupDirectory,
        ["rd-lookup", "ep"] => Route::LookupEndpoints,
        ["rd-lookup", "res"] => Route::LookupResources,
        ["rd-lookup", "d"] => Route::LookupDomains,
        ["rd-lookup", "gp"] => Route::LookupGroups,
        [RegistrationId::PATH_SEGMENT, id] => parse_id(id)
            .map(Route::Registration)
            .unwrap_or(Route::NotFound),
        _ => Route::NotFound,
    }
}

/// Only the canonical decimal form names a registration: `/reg/007` is not `/reg/7`.
fn parse_id(s: &str) -> Option<RegistrationId> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok().map(RegistrationId)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str) -> Route {
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        route(&segs)
    }

    #[test]
    fn routes_every_rd_resource() {
        assert_eq!(r("/.well-known/core"), Route::WellKnownCore);
        assert_eq!(r("/.well-known/rd"), Route::WellKnownRd);
        assert_eq!(r("/rd"), Route::Directory);
        assert_eq!(r("/rd-group"), Route::GroupDirectory);
        assert_eq!(r("/rd-lookup/ep"), Route::LookupEndpoints);
        assert_eq!(r("/rd-lookup/res"), Route::LookupResources);
        assert_eq!(r("/rd-lookup/d"), Route::LookupDomains);
        assert_eq!(r("/rd-lookup/gp"), Route::LookupGroups);
        assert_eq!(r("/reg/17"), Route::Registration(RegistrationId(17)));
    }

    #[test]
    fn unknown_paths_and_malformed_ids_are_not_found() {
        for p in [
            "/",
            "/rd/x",
            "/reg",
            "/reg/",
            "/reg/x",
            "/reg/007",
            "/reg/-1",
            "/reg/1/2",
            "/reg/99999999999999999999999",
            "/rd-lookup",
        ] {
            assert_eq!(r(p), Route::NotFound, "{p}");
        }
        assert_eq!(r("/reg/0"), Route::Registration(RegistrationId(0)));
    }
}
