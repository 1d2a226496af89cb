//! Test-only builders of registrations for the filter and lookup tests (the shapes of the
//! RFC 9176 examples), so each test states only what differs.

use std::sync::Arc;

use crate::registry::model::{
    BaseOrigin, EndpointName, Registration, RegistrationId, Sector, Status,
};
use link_format::{Link, Param};

pub(crate) struct RegBuilder(Registration);

pub(crate) fn reg(id: u64, ep: &str, base: &str) -> RegBuilder {
    RegBuilder(Registration {
        status_history: Default::default(),
        last_seen: Default::default(),
        identity: None,
        id: RegistrationId(id),
        ep: EndpointName::new(ep).expect("fixture names are valid"),
        d: None,
        base: base.into(),
        base_origin: BaseOrigin::Explicit,
        lifetime_s: 90_000,
        attrs: Vec::new(),
        links: Vec::new().into(),
        status: Status::Connected,
        registered_at_ms: 0,
        updated_at_ms: 0,
        expires_at_ms: u64::MAX,
        source: "[2001:db8::ffff]:5683".parse().expect("literal address"),
    })
}

impl RegBuilder {
    pub(crate) fn d(mut self, d: &str) -> Self {
        self.0.d = Some(Sector::new(d).expect("fixture sectors are valid"));
        self
    }
    pub(crate) fn derived_base(mut self) -> Self {
        self.0.base_origin = BaseOrigin::FromSource;
        self
    }
    pub(crate) fn attr(mut self, name: &str, value: Option<&str>) -> Self {
        self.0.attrs.push(Param::new(name, value));
        self
    }
    pub(crate) fn link(mut self, link: Link) -> Self {
        let mut links = self.0.links.to_vec();
        links.push(link);
        self.0.links = links.into();
        self
    }
    pub(crate) fn status(mut self, status: Status) -> Self {
        self.0.status = status;
        self
    }
    pub(crate) fn build(self) -> Arc<Registration> {
        Arc::new(self.0)
    }
}

/// The payload of RFC 6690 §5's sixth example, which RFC 9176 §6.3 registers twice.
pub(crate) fn rfc6690_example_links() -> Vec<Link> {
    vec![
        Link::new("/sensors")
            .with("ct", Some("40"))
            .with("title", Some("Sensor Index")),
        Link::new("/sensors/temp")
            .with("rt", Some("temperature-c"))
            .with("if", Some("sensor")),
        Link::new("/sensors/light")
            .with("rt", Some("light-lux"))
            .with("if", Some("sensor")),
        Link::new("http://www.example.com/sensors/t123")
            .with("anchor", Some("/sensors/temp"))
            .with("rel", Some("describedby")),
        Link::new("/t")
            .with("anchor", Some("/sensors/temp"))
            .with("rel", Some("alternate")),
    ]
}
