//! The device object: the one JSON shape of a registration in every user-facing output. The
//! platform's `snapshot` / `device_registered` / `device_updated` frames, the admin API
//! (`GET /api/devices`, `/api/devices/{ep}`) and `rd-dump --json` (both from a data directory
//! and with `--url`) all serialize [`DeviceObject`], so they print the same object for the same
//! registration; documented in `docs/platform-protocol.md`, "A device object". The storage
//! encoding (`registry::store`) stays private to the store. Pure.
//!
//! Rendered straight from a [`Registration`] without copying it (a snapshot of 100,000 devices
//! is serialized on the link's thread). [`DeviceRecord`] reads the object back (rd-dump's table
//! from `--url`, tests); it is the parse side of this one shape, not a second rendering.
//!
//! Choices where the contract is silent (a platform team can rely on these shapes):
//! - `et` is a string or `null`. RFC 9176 lets `et` repeat; repeated values are joined with one
//!   space into that one string, the same convention the contract uses for `rt` and `if` lists,
//!   so nothing is lost and the type never changes.
//! - `attrs` holds every other extra endpoint attribute, in first-seen order. A value is a
//!   string; a valueless attribute (`?flag`) is `true`; a repeated attribute has its values
//!   joined with one space (valueless repeats add nothing to a valued one).
//! - In `links`, `rt`, `if` and `ct` are the raw values (repeats joined with a space) or `null`
//!   when absent; `obs` is `true` when the link has an `obs` attribute; every other attribute,
//!   `anchor` included, goes into the link's `attrs` with the same rules as above.
//! - `lt` is the registration lifetime in seconds; `registered_at`, `updated_at` and
//!   `expires_at` are RFC 3339 UTC with milliseconds.
//! - Added within v1 (unknown fields are ignored by both sides): `expires_at`, `location` (the
//!   registration resource, `/reg/N`) and `source` (the address the last registration or
//!   update came from), which operators need and a platform may use; then `dtls_identity`
//!   (the DTLS identity name the registration was made with and belongs to, `null` over plain
//!   CoAP; never key material) and `coaps` (whether `base` is a `coaps://` URI), so an operator
//!   can tell who may change a registration. The RD lookup interface (RFC 9176) shows neither.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use serde::Deserialize;

use crate::registry::Registration;
use crate::time::rfc3339_ms;
use link_format::{Link, Param};

/// Serializes a registration as the contract's device object.
#[derive(Debug, Clone, Copy)]
pub struct DeviceObject<'a>(pub &'a Registration);

/// A merged attribute value: text (repeats joined) or a bare flag.
enum AttrValue {
    Flag,
    Text(String),
}

impl Serialize for AttrValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttrValue::Flag => s.serialize_bool(true),
            AttrValue::Text(t) => s.serialize_str(t),
        }
    }
}

/// Group parameters by name in first-seen order, skipping the names in `skip`.
fn merged_attrs<'a>(params: &'a [Param], skip: &[&str]) -> Vec<(&'a str, AttrValue)> {
    let mut merged: Vec<(&'a str, AttrValue)> = Vec::new();
    for p in params.iter().filter(|p| !skip.contains(&p.name.as_str())) {
        let existing = merged.iter_mut().find(|(name, _)| *name == p.name);
        match (existing, p.value.as_deref()) {
            (None, None) => merged.push((&p.name, AttrValue::Flag)),
            (None, Some(v)) => merged.push((&p.name, AttrValue::Text(v.to_owned()))),
            (Some(_), None) => {}
            (Some((_, slot @ AttrValue::Flag)), Some(v)) => *slot = AttrValue::Text(v.to_owned()),
            (Some((_, AttrValue::Text(t))), Some(v)) => {
                t.push(' ');
                t.push_str(v);
            }
        }
    }
    merged
}

/// Every value of `name` joined with a space, or `None` when it has no value.
fn joined<'a>(mut values: impl Iterator<Item = &'a str>) -> Option<String> {
    let first = values.next()?;
    let mut out = first.to_owned();
    for v in values {
        out.push(' ');
        out.push_str(v);
    }
    Some(out)
}

struct AttrMap<'a>(&'a [(&'a str, AttrValue)]);

impl Serialize for AttrMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Link attributes that have their own field in a link object.
const LINK_FIELDS: [&str; 4] = ["rt", "if", "ct", "obs"];

/// Serializes one link as the device object's link object.
#[derive(Debug, Clone, Copy)]
pub struct LinkObject<'a>(pub &'a Link);

impl Serialize for LinkObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let link = self.0;
        let attrs = merged_attrs(&link.params, &LINK_FIELDS);
        let mut st = s.serialize_struct("Link", 6)?;
        st.serialize_field("href", &link.target)?;
        st.serialize_field("rt", &joined(link.values("rt")))?;
        st.serialize_field("if", &joined(link.values("if")))?;
        st.serialize_field("ct", &joined(link.values("ct")))?;
        st.serialize_field("obs", &link.has("obs"))?;
        st.serialize_field("attrs", &AttrMap(&attrs))?;
        st.end()
    }
}

struct LinkList<'a>(&'a [Link]);

impl Serialize for LinkList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(LinkObject))
    }
}

impl Serialize for DeviceObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let attrs = merged_attrs(&r.attrs, &["et"]);
        let mut st = s.serialize_struct("Device", 15)?;
        st.serialize_field("ep", r.ep.as_str())?;
        st.serialize_field("d", &r.d.as_ref().map(|d| d.as_str()))?;
        st.serialize_field("base", &r.base)?;
        st.serialize_field("lt", &r.lifetime_s)?;
        st.serialize_field("status", &r.status.as_u8())?;
        st.serialize_field("et", &joined(r.attr_values("et")))?;
        st.serialize_field("attrs", &AttrMap(&attrs))?;
        st.serialize_field("registered_at", &rfc3339_ms(r.registered_at_ms))?;
        st.serialize_field("updated_at", &rfc3339_ms(r.updated_at_ms))?;
        st.serialize_field("expires_at", &rfc3339_ms(r.expires_at_ms))?;
        st.serialize_field("location", &r.id.location())?;
        st.serialize_field("source", &r.source)?;
        // The identity's name only: the registration keeps no key material.
        st.serialize_field("dtls_identity", &r.identity.as_deref())?;
        st.serialize_field("coaps", &is_coaps(&r.base))?;
        st.serialize_field("links", &LinkList(&r.links))?;
        st.end()
    }
}

/// Whether `base` is a `coaps://` URI (a URI scheme is case-insensitive, RFC 3986 §3.1).
fn is_coaps(base: &str) -> bool {
    base.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("coaps://"))
}

/// An attribute value of a device object as read back: a string, or `true` for a flag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AttrRecord {
    Flag(bool),
    Text(String),
}

/// A link object read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LinkRecord {
    pub href: String,
    pub rt: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub ct: Option<String>,
    pub obs: bool,
    #[serde(default)]
    pub attrs: BTreeMap<String, AttrRecord>,
}

impl LinkRecord {
    /// The link as link-format (for tables): `rt`, `if`, `ct`, `obs`, then the other
    /// attributes by name. Joined values stay one value, as the object carries them.
    pub fn to_link(&self) -> Link {
        let mut link = Link::new(self.href.as_str());
        for (name, value) in [("rt", &self.rt), ("if", &self.if_), ("ct", &self.ct)] {
            if let Some(v) = value {
                link = link.with(name, Some(v));
            }
        }
        if self.obs {
            link = link.with("obs", None);
        }
        for (name, value) in &self.attrs {
            match value {
                AttrRecord::Flag(false) => {}
                AttrRecord::Flag(true) => link = link.with(name, None),
                AttrRecord::Text(v) => link = link.with(name, Some(v)),
            }
        }
        link
    }
}

/// A device object read back (the fields every output carries).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceRecord {
    pub ep: String,
    pub d: Option<String>,
    pub base: String,
    pub lt: u32,
    pub status: u8,
    pub et: Option<String>,
    #[serde(default)]
    pub attrs: BTreeMap<String, AttrRecord>,
    pub registered_at: String,
    pub updated_at: String,
    pub expires_at: String,
    pub location: String,
    pub source: String,
    /// Absent in objects from gateways before DTLS: read as `None` / `false`.
    #[serde(default)]
    pub dtls_identity: Option<String>,
    #[serde(default)]
    pub coaps: bool,
    pub links: Vec<LinkRecord>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::registry::{BaseOrigin, EndpointName, RegistrationId, Sector, Status};
    use serde_json::json;

    /// A plain registration for tests of this module and its neighbours.
    pub(crate) fn registration(ep: &str) -> Registration {
        Registration {
            status_history: Default::default(),
            last_seen: Default::default(),
            identity: None,
            id: RegistrationId(1),
            ep: EndpointName::new(ep).unwrap(),
            d: None,
            base: "coap://127.0.0.1:56830".into(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 90_000,
            attrs: vec![],
            links: vec![].into(),
            status: Status::Connected,
            registered_at_ms: 1_795_615_200_123,
            updated_at_ms: 1_795_615_260_000,
            expires_at_ms: 1_795_705_200_123,
            source: "127.0.0.1:56830".parse().unwrap(),
        }
    }

    fn render(r: &Registration) -> serde_json::Value {
        serde_json::to_value(DeviceObject(r)).unwrap()
    }

    #[test]
    fn renders_the_contract_example() {
        let mut r = registration("node1");
        r.d = Some(Sector::new("floor1").unwrap());
        r.attrs = vec![
            Param::new("et", Some("oic.d.sensor")),
            Param::new("foo", Some("bar")),
        ];
        r.links = vec![Link::new("/sensors/temp")
            .with("rt", Some("temperature"))
            .with("if", Some("sensor"))
            .with("ct", Some("0"))
            .with("obs", None)
            .with("title", Some("Room temperature"))]
        .into();
        assert_eq!(
            render(&r),
            json!({"ep": "node1", "d": "floor1", "base": "coap://127.0.0.1:56830", "lt": 90000,
                   "status": 1, "et": "oic.d.sensor", "attrs": {"foo": "bar"},
                   "registered_at": "2026-11-25T14:00:00.123Z",
                   "updated_at": "2026-11-25T14:01:00.000Z",
                   "expires_at": "2026-11-26T15:00:00.123Z",
                   "location": "/reg/1", "source": "127.0.0.1:56830",
                   "dtls_identity": null, "coaps": false,
                   "links": [{"href": "/sensors/temp", "rt": "temperature", "if": "sensor",
                              "ct": "0", "obs": true, "attrs": {"title": "Room temperature"}}]})
        );
    }

    #[test]
    fn absent_values_are_null_and_the_shape_stays_the_same() {
        let mut r = registration("bare");
        r.status = Status::Disconnected;
        r.links = vec![Link::new("/x")].into();
        assert_eq!(
            render(&r),
            json!({"ep": "bare", "d": null, "base": "coap://127.0.0.1:56830", "lt": 90000,
                   "status": 0, "et": null, "attrs": {},
                   "registered_at": "2026-11-25T14:00:00.123Z",
                   "updated_at": "2026-11-25T14:01:00.000Z",
                   "expires_at": "2026-11-26T15:00:00.123Z",
                   "location": "/reg/1", "source": "127.0.0.1:56830",
                   "dtls_identity": null, "coaps": false,
                   "links": [{"href": "/x", "rt": null, "if": null, "ct": null, "obs": false,
                              "attrs": {}}]})
        );
    }

    #[test]
    fn a_registration_made_over_dtls_shows_its_identity_and_coaps_base() {
        let mut r = registration("secure");
        r.identity = Some("node1".into());
        r.base = "coaps://127.0.0.1:40000".into();
        let v = render(&r);
        assert_eq!(v["dtls_identity"], "node1");
        assert_eq!(v["coaps"], true);
        // An explicit base is judged by its scheme, whatever its case.
        r.base = "COAPS://[2001:db8::1]".into();
        assert_eq!(render(&r)["coaps"], true);
        r.base = "coap://127.0.0.1".into();
        assert_eq!(render(&r)["coaps"], false);
        let back: DeviceRecord = serde_json::from_value(render(&r)).unwrap();
        assert_eq!(back.dtls_identity.as_deref(), Some("node1"));
        assert!(!back.coaps);
    }

    #[test]
    fn repeated_and_valueless_attributes_follow_the_documented_rules() {
        let mut r = registration("multi");
        r.attrs = vec![
            Param::new("et", Some("a.b")),
            Param::new("flag", None::<String>),
            Param::new("et", Some("c.d")),
            Param::new("x", Some("1")),
            Param::new("x", Some("2")),
            Param::new("y", None::<String>),
            Param::new("y", Some("v")),
        ];
        r.links = vec![Link::new("/s")
            .with("rt", Some("temperature"))
            .with("rt", Some("humidity"))
            .with("anchor", Some("coap://h/"))
            .with("sz", None)]
        .into();
        let v = render(&r);
        assert_eq!(v["et"], "a.b c.d");
        assert_eq!(v["attrs"], json!({"flag": true, "x": "1 2", "y": "v"}));
        assert_eq!(v["links"][0]["rt"], "temperature humidity");
        assert_eq!(
            v["links"][0]["attrs"],
            json!({"anchor": "coap://h/", "sz": true})
        );
    }

    #[test]
    fn reads_back_and_links_become_link_format_again() {
        let mut r = registration("back");
        r.links = vec![Link::new("/s")
            .with("if", Some("sensor"))
            .with("rt", Some("temperature"))
            .with("obs", None)
            .with("title", Some("Room"))
            .with("sz", None)]
        .into();
        let text = serde_json::to_string(&DeviceObject(&r)).unwrap();
        let back: DeviceRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back.location, "/reg/1");
        assert_eq!(back.expires_at, "2026-11-26T15:00:00.123Z");
        assert_eq!(
            link_format::serialize(&[back.links[0].to_link()]),
            "</s>;rt=\"temperature\";if=\"sensor\";obs;sz;title=\"Room\""
        );
    }
}
