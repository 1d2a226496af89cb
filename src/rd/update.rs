//! Parsing of registration updates: `POST {+location}{?lt,base,extra-attrs*}` with no payload
//! (RFC 9176 §5.3.1). draft-11's `con` is accepted as `base`.
//!
//! The RdServer calls `UpdateRequest::parse` and sends the result as `registry::Update`; whether
//! the registration exists (4.04 otherwise) is the Registry's answer.

use super::error::RdError;
use super::params::QueryParams;
use super::register::{extra_attrs, parse_base, parse_lifetime};
use super::resolve::check_link_local_base;
use link_format::Param;

const UPDATE_PARAMS: &[&str] = &["lt", "base", "con"];

/// A validated registration update.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UpdateRequest {
    /// A new `lt`; `None` keeps the last one (§5.3.1).
    pub lifetime_s: Option<u32>,
    /// A new explicit base, validated like at registration.
    pub base: Option<String>,
    /// Extra attributes overriding same-named stored ones (§5.3.1).
    pub attrs: Vec<Param>,
}

impl UpdateRequest {
    /// Errors (all 4.00): a payload (update "only describes the use of POST with an empty
    /// payload"; aiocoap: "Registration update with body not specified"), `ep` or `d` present
    /// (they identify the registration and cannot change), and the `lt`/`base` rules of
    /// registration. The Content-Format option is ignored when there is no payload.
    pub(crate) fn parse<S: AsRef<str>>(
        query: &[S],
        _content_format: Option<u16>,
        payload: &[u8],
    ) -> Result<UpdateRequest, RdError> {
        if !payload.is_empty() {
            return Err(RdError::UnexpectedPayload);
        }
        let params = QueryParams::parse(query)?;
        for immutable in ["ep", "d"] {
            if params.contains(immutable) {
                return Err(RdError::ImmutableParam(immutable));
            }
        }
        Ok(UpdateRequest {
            lifetime_s: parse_lifetime(&params)?,
            base: parse_base(&params)?,
            attrs: extra_attrs(&params, UPDATE_PARAMS)?,
        })
    }
}

impl UpdateRequest {
    /// RFC 9176 §5: a new link-local base must come from the link (see
    /// `resolve::check_link_local_base`); the RdServer calls this with the update's source.
    pub(crate) fn check_source(&self, source: std::net::SocketAddr) -> Result<(), RdError> {
        match &self.base {
            Some(b) => check_link_local_base(b, source).map_err(|reason| RdError::InvalidBase {
                param: "base",
                value: b.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(query: &[&str]) -> Result<UpdateRequest, RdError> {
        UpdateRequest::parse(query, None, b"")
    }

    #[test]
    fn empty_update_changes_nothing() {
        assert_eq!(
            upd(&[]).unwrap(),
            UpdateRequest {
                lifetime_s: None,
                base: None,
                attrs: vec![]
            }
        );
    }

    #[test]
    fn rfc_9176_base_change_example() {
        // §5.3.1: POST /rd/4521?base=coaps://new.example.com:5684
        let u = upd(&["base=coaps://new.example.com:5684"]).unwrap();
        assert_eq!(u.base.as_deref(), Some("coaps://new.example.com:5684"));
        let u = upd(&["lt=500", "con=coap://[2001:db8::2]", "et=x", "foo"]).unwrap();
        assert_eq!(u.lifetime_s, Some(500));
        assert_eq!(u.base.as_deref(), Some("coap://[2001:db8::2]"));
        assert_eq!(
            u.attrs,
            vec![
                Param::new("et", Some("x")),
                Param::new("foo", None::<String>)
            ]
        );
    }

    #[test]
    fn link_local_base_from_afar_is_4_00() {
        let u = upd(&["base=coap://[fe80::1]"]).unwrap();
        assert_eq!(
            u.check_source("[2001:db8::1]:5683".parse().unwrap())
                .unwrap_err()
                .code(),
            (4, 0)
        );
        assert!(u.check_source("[fe80::7%1]:5683".parse().unwrap()).is_ok());
        assert!(upd(&[])
            .unwrap()
            .check_source("[2001:db8::1]:1".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn bad_updates_are_4_00() {
        assert_eq!(
            UpdateRequest::parse(&["lt=5"], Some(40), b"</a>").unwrap_err(),
            RdError::UnexpectedPayload
        );
        assert_eq!(upd(&["ep=x"]).unwrap_err(), RdError::ImmutableParam("ep"));
        assert_eq!(upd(&["d=x"]).unwrap_err(), RdError::ImmutableParam("d"));
        for bad in [
            &["lt=0"][..],
            &["lt=4294967296"],
            &["lt=x"],
            &["lt=5", "lt=6"],
            &["base=coap://h?q"],
            &["base=coap://[fe80::1%25eth0]"],
            &["base=coap://a", "con=coap://b"],
            &["=x"],
        ] {
            assert_eq!(upd(bad).unwrap_err().code(), (4, 0), "{bad:?}");
        }
    }
}
