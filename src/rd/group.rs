//! draft-11 groups (`POST /rd-group?gp&d&con` with member links `<>;ep="node1"`, draft-11 §6.1),
//! stored the RFC 9176 way (Appendix A).
//!
//! Design. RFC 9176 dropped `/rd-group`; its groups are ordinary registrations with
//! `et=core.rd-group` and a multicast `base`, whose endpoint name is the group name. A draft-11
//! group request therefore becomes a registration in the same sector with:
//! - `ep` = `gp` (the group name shares the sector's endpoint namespace, as in App. A: the
//!   RdServer must not let a group replace a non-group registration of the same name, nor the
//!   reverse);
//! - `base` = `con` (or `base`) when given, typically a multicast URI; otherwise the source
//!   address, as for any registration (§5);
//! - attributes `et=core.rd-group`, then one `member=<ep>` per member (in payload order, without
//!   duplicates), then any extra query parameter;
//! - no links: the member list is not a set of resources, so it must not show up in resource
//!   lookup nor cross-match `ep=` filters (a lookup `?ep=node1` must find node1, not its groups).
//!
//! Consequences: `/rd-lookup/ep?et=core.rd-group` and `/rd-lookup/res?et=core.rd-group` work as
//! App. A describes; endpoint lookup shows the members as `member` attributes; draft-11
//! `/rd-lookup/gp` (see `lookup::render_groups`) reads `gp` as the group's `ep` and `ep` as a
//! member; `/rd-lookup/ep?gp=…` works through `LookupQuery::bind_groups`. `DELETE` of the group
//! is a DELETE of its registration resource (the location returned at creation). draft-11 groups
//! have no lifetime: the RdServer registers them with the largest `lt` unless one is given.
//! Members must already be registered (draft-11 §6.1, 4.04 otherwise: `RdError::UnknownGroupMember`),
//! which only the Registry can tell.

use std::net::SocketAddr;

use super::error::RdError;
use super::params::QueryParams;
use super::register::{extra_attrs, parse_base, parse_lifetime, parse_link_payload, parse_sector};
use crate::registry::model::{EndpointName, Registration, Sector};
use link_format::{Link, Param};

/// The endpoint type of group registrations (RFC 9176 §9.4, App. A).
pub(crate) const GROUP_ENDPOINT_TYPE: &str = "core.rd-group";
/// The attribute that lists one member of a group registration.
pub(crate) const MEMBER_ATTR: &str = "member";

const GROUP_PARAMS: &[&str] = &["gp", "d", "con", "base", "lt"];

/// A validated `POST /rd-group` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupRequest {
    /// The group name (`gp`), validated like an endpoint name (≤63 bytes, no control chars).
    pub gp: EndpointName,
    pub d: Option<Sector>,
    /// `con` or `base`: the group's (usually multicast) base URI.
    pub base: Option<String>,
    /// An `lt` if the CT gave one (draft-11 groups have none).
    pub lifetime_s: Option<u32>,
    /// Member endpoint names, in payload order, without duplicates.
    pub members: Vec<EndpointName>,
    /// Other query parameters, stored as extra attributes.
    pub attrs: Vec<Param>,
}

impl GroupRequest {
    /// Errors: `gp` missing or invalid, `d`/`con`/`base`/`lt` invalid or repeated, payload not
    /// UTF-8 or not link-format, a member link without a single valid `ep` (all 4.00); payload
    /// Content-Format other than 40 (4.15). Link targets are ignored (draft-11 writes `<>`).
    pub(crate) fn parse<S: AsRef<str>>(
        query: &[S],
        content_format: Option<u16>,
        payload: &[u8],
    ) -> Result<GroupRequest, RdError> {
        let params = QueryParams::parse(query)?;
        let gp_raw = params.single("gp")?.ok_or(RdError::MissingParam("gp"))?;
        let gp = EndpointName::new(gp_raw).map_err(|source| RdError::InvalidName {
            param: "gp",
            source,
        })?;
        let d = parse_sector(&params)?;
        let base = parse_base(&params)?;
        let lifetime_s = parse_lifetime(&params)?;
        let attrs = extra_attrs(&params, GROUP_PARAMS)?;
        let links = parse_link_payload(content_format, payload)?;
        let members = members_from_links(&links)?;
        Ok(GroupRequest {
            gp,
            d,
            base,
            lifetime_s,
            members,
            attrs,
        })
    }

    /// The attributes of the group's registration: `et=core.rd-group`, one `member` per
    /// member, then the extra attributes.
    pub(crate) fn registration_attrs(&self) -> Vec<Param> {
        let mut attrs = Vec::with_capacity(1 + self.members.len() + self.attrs.len());
        attrs.push(Param::new("et", Some(GROUP_ENDPOINT_TYPE)));
        attrs.extend(
            self.members
                .iter()
                .map(|m| Param::new(MEMBER_ATTR, Some(m.as_str()))),
        );
        attrs.extend(self.attrs.iter().cloned());
        attrs
    }

    /// The group as a registration request (RFC 9176 App. A), ready for `registry::Register`.
    pub(crate) fn into_registration(
        self,
        source: SocketAddr,
        default_lt: u32,
    ) -> super::register::RegistrationRequest {
        let attrs = self.registration_attrs();
        super::register::RegistrationRequest {
            ep: self.gp,
            d: self.d,
            lifetime_s: self.lifetime_s.unwrap_or(default_lt),
            base: self.base,
            attrs,
            links: Vec::new(),
            source,
        }
    }
}

/// The members named by draft-11 member links (`<>;ep="node1"`): each link needs exactly one
/// valid `ep`; targets are ignored; duplicates are dropped, first occurrence kept.
pub(crate) fn members_from_links(links: &[Link]) -> Result<Vec<EndpointName>, RdError> {
    let mut members: Vec<EndpointName> = Vec::with_capacity(links.len());
    for (index, link) in links.iter().enumerate() {
        let invalid = |reason: String| RdError::InvalidGroupMember { index, reason };
        let mut eps = link.params.iter().filter(|p| p.name == "ep");
        let ep = eps.next().ok_or_else(|| invalid("no ep".into()))?;
        if eps.next().is_some() {
            return Err(invalid("more than one ep".into()));
        }
        let value = ep
            .value
            .as_deref()
            .ok_or_else(|| invalid("ep has no value".into()))?;
        let name = EndpointName::new(value).map_err(|e| invalid(format!("ep: {e}")))?;
        if !members.contains(&name) {
            members.push(name);
        }
    }
    Ok(members)
}

/// Whether a registration is a group (`et=core.rd-group`, RFC 9176 App. A).
pub(crate) fn is_group(reg: &Registration) -> bool {
    reg.attr_values("et").any(|v| v == GROUP_ENDPOINT_TYPE)
}

/// The members recorded on a group registration (same sector as the group).
pub(crate) fn members(reg: &Registration) -> impl Iterator<Item = EndpointName> + '_ {
    reg.attr_values(MEMBER_ATTR)
        .filter_map(|v| EndpointName::new(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_11_group_example() {
        // draft-11 §6.1: POST /rd-group?gp=lights&con=coap://[ff35:30:2001:db8::1]
        // with payload <>;ep="node1",<>;ep="node2". The payload's links are built directly
        // (the link-format parser is exercised in its own module).
        let links = [
            Link::new("").with("ep", Some("node1")),
            Link::new("").with("ep", Some("node2")),
            Link::new("").with("ep", Some("node1")),
        ];
        let members = members_from_links(&links).unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.as_str()).collect();
        assert_eq!(names, ["node1", "node2"]);

        let g = GroupRequest::parse(
            &[
                "gp=lights",
                "con=coap://[ff35:30:2001:db8::1]",
                "d=example.com",
            ],
            Some(40),
            b"",
        )
        .unwrap();
        assert_eq!(g.gp.as_str(), "lights");
        assert_eq!(g.base.as_deref(), Some("coap://[ff35:30:2001:db8::1]"));
        assert_eq!(g.d.as_ref().map(|d| d.as_str()), Some("example.com"));
        assert!(g.members.is_empty());
        let reg = GroupRequest {
            members: vec![EndpointName::new("node1").unwrap()],
            ..g
        }
        .into_registration("[::1]:5683".parse().unwrap(), u32::MAX);
        assert_eq!(reg.ep.as_str(), "lights");
        assert_eq!(reg.lifetime_s, u32::MAX);
        assert_eq!(
            reg.attrs,
            vec![
                Param::new("et", Some("core.rd-group")),
                Param::new("member", Some("node1"))
            ]
        );
        assert!(reg.links.is_empty());
    }

    #[test]
    fn bad_member_links_are_4_00() {
        let cases = [
            vec![Link::new("")],
            vec![Link::new("").with("ep", None)],
            vec![Link::new("").with("ep", Some(""))],
            vec![Link::new("").with("ep", Some("a")).with("ep", Some("b"))],
            vec![Link::new("").with("ep", Some("a\u{1}"))],
        ];
        for links in cases {
            let err = members_from_links(&links).unwrap_err();
            assert!(matches!(err, RdError::InvalidGroupMember { index: 0, .. }));
            assert_eq!(err.code(), (4, 0));
        }
    }

    #[test]
    fn bad_group_requests() {
        assert_eq!(
            GroupRequest::parse(&["d=x"], Some(40), b"").unwrap_err(),
            RdError::MissingParam("gp")
        );
        assert_eq!(
            GroupRequest::parse(&["gp=a", "gp=b"], None, b"")
                .unwrap_err()
                .code(),
            (4, 0)
        );
        assert_eq!(
            GroupRequest::parse(&[&format!("gp={}", "g".repeat(64))], None, b"")
                .unwrap_err()
                .code(),
            (4, 0)
        );
        assert_eq!(
            GroupRequest::parse(&["gp=a", "con=coap://h?x"], None, b"")
                .unwrap_err()
                .code(),
            (4, 0)
        );
        assert_eq!(
            GroupRequest::parse(&["gp=a", "con=coap://h", "base=coap://h"], None, b"").unwrap_err(),
            RdError::BaseAndCon
        );
        assert_eq!(
            GroupRequest::parse(&["gp=a"], Some(504), b"[]")
                .unwrap_err()
                .code(),
            (4, 15)
        );
        assert_eq!(
            GroupRequest::parse(&["gp=a"], Some(40), b"\xff").unwrap_err(),
            RdError::PayloadNotUtf8
        );
    }
}
