//! The contract's device object (`docs/platform-protocol.md`, "A device object"), rendered
//! straight from a [`Registration`] without copying it: used by `snapshot`, `device_registered`
//! and `device_updated` frames (see `platform::protocol`). Pure.
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
//! - `lt` is the registration lifetime in seconds; `registered_at` and `updated_at` are RFC 3339
//!   UTC with milliseconds.

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::link_format::{Link, Param};
use crate::registry::Registration;
use crate::time::rfc3339_ms;

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

struct LinkObject<'a>(&'a Link);

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
        let mut st = s.serialize_struct("Device", 11)?;
        st.serialize_field("ep", r.ep.as_str())?;
        st.serialize_field("d", &r.d.as_ref().map(|d| d.as_str()))?;
        st.serialize_field("base", &r.base)?;
        st.serialize_field("lt", &r.lifetime_s)?;
        st.serialize_field("status", &r.status.as_u8())?;
        st.serialize_field("et", &joined(r.attr_values("et")))?;
        st.serialize_field("attrs", &AttrMap(&attrs))?;
        st.serialize_field("registered_at", &rfc3339_ms(r.registered_at_ms))?;
        st.serialize_field("updated_at", &rfc3339_ms(r.updated_at_ms))?;
        st.serialize_field("links", &LinkList(&r.links))?;
        st.end()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::registry::{BaseOrigin, EndpointName, RegistrationId, Sector, Status};
    use serde_json::json;

    /// A plain registration for tests of this module and its neighbours.
    pub(crate) fn registration(ep: &str) -> Registration {
        Registration {
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
                   "links": [{"href": "/x", "rt": null, "if": null, "ct": null, "obs": false,
                              "attrs": {}}]})
        );
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
}
