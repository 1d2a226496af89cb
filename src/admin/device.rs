//! The JSON shape of a device in the admin API (`GET /api/devices`, `/api/devices/{ep}`), and
//! of a page of them. Pure; the same types deserialize the API's answers in `rd-dump --url`.
//!
//! A device is one registration (RFC 9176 §5): `ep`, `d`, `base`, `lt`, `status` (1 connected,
//! 0 disconnected), `registered_at_ms`, `updated_at_ms` (the last registration or update: the
//! "last seen" of the status page), `expires_at_ms`, `source` (where the last registration or
//! update came from), `location` (the registration resource), the endpoint's extra attributes
//! and its links with their attributes, in registration order. Attributes are lists of
//! `{name, value}` because names may repeat and values may be absent.

use serde::{Deserialize, Serialize};

use crate::link_format::{Link, Param};
use crate::registry::model::Registration;

/// One attribute or link parameter; `value` is `null` for a valueless one (`obs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamView {
    pub name: String,
    pub value: Option<String>,
}

/// One registered link: its target as registered and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    pub href: String,
    pub attributes: Vec<ParamView>,
}

/// One device (registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// The registration resource, `/reg/<id>`.
    pub location: String,
    pub ep: String,
    pub d: Option<String>,
    pub base: String,
    /// Lifetime in seconds.
    pub lt: u32,
    /// 1 connected, 0 disconnected (the Pinger's verdict).
    pub status: u8,
    pub registered_at_ms: u64,
    /// Last registration or update ("last seen").
    pub updated_at_ms: u64,
    pub expires_at_ms: u64,
    pub source: String,
    pub attrs: Vec<ParamView>,
    pub links: Vec<LinkView>,
}

/// One page of `GET /api/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePage {
    /// Devices matching the filters, over all pages.
    pub total: u64,
    pub page: u64,
    pub count: u64,
    pub devices: Vec<DeviceView>,
}

impl From<&Param> for ParamView {
    fn from(p: &Param) -> Self {
        ParamView {
            name: p.name.to_string(),
            value: p.value.as_ref().map(|v| v.to_string()),
        }
    }
}

impl From<&Link> for LinkView {
    fn from(link: &Link) -> Self {
        LinkView {
            href: link.target.to_string(),
            attributes: link.params.iter().map(ParamView::from).collect(),
        }
    }
}

impl LinkView {
    /// Back to a link-format link (for `rd-dump --url`'s table).
    pub fn to_link(&self) -> Link {
        Link {
            target: self.href.as_str().into(),
            params: self
                .attributes
                .iter()
                .map(|p| Param::new(p.name.clone(), p.value.clone()))
                .collect(),
        }
    }
}

impl From<&Registration> for DeviceView {
    fn from(reg: &Registration) -> Self {
        DeviceView {
            location: reg.id.location(),
            ep: reg.ep.as_str().to_string(),
            d: reg.d.as_ref().map(|d| d.as_str().to_string()),
            base: reg.base.to_string(),
            lt: reg.lifetime_s,
            status: reg.status.as_u8(),
            registered_at_ms: reg.registered_at_ms,
            updated_at_ms: reg.updated_at_ms,
            expires_at_ms: reg.expires_at_ms,
            source: reg.source.to_string(),
            attrs: reg.attrs.iter().map(ParamView::from).collect(),
            links: reg.links.iter().map(LinkView::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::{BaseOrigin, EndpointName, RegistrationId, Sector, Status};

    fn registration() -> Registration {
        Registration {
            id: RegistrationId(7),
            ep: EndpointName::new("node1").unwrap(),
            d: Some(Sector::new("floor1").unwrap()),
            base: "coap://127.0.0.1:40001".into(),
            base_origin: BaseOrigin::FromSource,
            lifetime_s: 90,
            attrs: vec![Param::new("et", Some("oic.d.sensor"))],
            links: vec![Link::new("/sensors/temp")
                .with("rt", Some("temperature"))
                .with("obs", None)]
            .into(),
            status: Status::Disconnected,
            registered_at_ms: 1_000,
            updated_at_ms: 2_000,
            expires_at_ms: 92_000,
            source: "127.0.0.1:40001".parse().unwrap(),
        }
    }

    #[test]
    fn a_registration_as_json() {
        let json = serde_json::to_value(DeviceView::from(&registration())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "location": "/reg/7",
                "ep": "node1",
                "d": "floor1",
                "base": "coap://127.0.0.1:40001",
                "lt": 90,
                "status": 0,
                "registered_at_ms": 1000,
                "updated_at_ms": 2000,
                "expires_at_ms": 92000,
                "source": "127.0.0.1:40001",
                "attrs": [{"name": "et", "value": "oic.d.sensor"}],
                "links": [{
                    "href": "/sensors/temp",
                    "attributes": [
                        {"name": "rt", "value": "temperature"},
                        {"name": "obs", "value": null}
                    ]
                }]
            })
        );
    }

    #[test]
    fn json_round_trips_and_links_convert_back() {
        let view = DeviceView::from(&registration());
        let back: DeviceView =
            serde_json::from_str(&serde_json::to_string(&view).unwrap()).unwrap();
        assert_eq!(back, view);
        assert_eq!(back.links[0].to_link(), registration().links[0]);
    }
}
