//! The Registry actor's typed messages, their replies, and the events it publishes.
//!
//! Writers (RdServer, Pinger, Discovery) send these to the Registry actor, which answers only
//! after the change is durable in sled. Readers that only look things up use
//! [`super::RegistryReader`] instead, which needs no message round trip.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;

use super::error::RegistryError;
use super::model::{EndpointName, Registration, RegistrationId, Sector, Status};
use link_format::{Link, Param};

/// Create or replace the registration of `ep`+`d` (RFC 9176 §5). Idempotent: the same `ep`+`d`
/// keeps its id and location; links, attributes, base and lifetime are replaced.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Registered, RegistryError>")]
pub struct Register {
    pub ep: EndpointName,
    pub d: Option<Sector>,
    /// An explicit `base` (or draft-11 `con`); `None` derives it from `source`.
    pub base: Option<String>,
    pub lifetime_s: u32,
    pub attrs: Vec<Param>,
    pub links: Vec<Link>,
    pub source: SocketAddr,
    /// The requester's DTLS identity; `None` over plain CoAP and for the gateway's own.
    pub identity: Option<Arc<str>>,
}

/// The reply to [`Register`].
#[derive(Debug, Clone)]
pub struct Registered {
    pub registration: Arc<Registration>,
    /// `true` when no registration of this `ep`+`d` existed (2.01 either way, per RFC 9176).
    pub created: bool,
}

/// The endpoint attribute (`src=discovery`) that marks a registration the Discovery actor made on
/// a device's behalf.
pub(crate) const DISCOVERED_MARKER: (&str, &str) = ("src", "discovery");

/// `true` when `registration` was made by the Discovery actor, not by the device itself.
pub(crate) fn is_discovered(registration: &Registration) -> bool {
    registration
        .attr_values(DISCOVERED_MARKER.0)
        .any(|v| v == DISCOVERED_MARKER.1)
}

/// A registration on a device's behalf by Discovery: a [`Register`] that never
/// replaces a registration of the same `ep`+`d` the device made itself (one without
/// [`DISCOVERED_MARKER`], live or still in its expiry grace), nor one discovered at another
/// address (two devices offering the same `ep`: the first keeps it until it expires, RFC 9176
/// §7.5 "first come first remembered"). The caller adds the marker.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<DiscoveredOutcome, RegistryError>")]
pub struct RegisterDiscovered(pub Register);

/// The reply to [`RegisterDiscovered`].
#[derive(Debug, Clone)]
pub enum DiscoveredOutcome {
    Registered(Registered),
    /// Left alone: the device registered itself under this name.
    SelfRegistered(Arc<Registration>),
    /// Left alone: a device at another address was discovered under this name first.
    NameTaken(Arc<Registration>),
}

/// Refresh a registration (RFC 9176 §5.3.1): renews the lifetime, optionally changes `lt`,
/// `base`, and extra attributes (which override same-named ones). A registration whose base was
/// never explicit moves to `source`. Sets status 1. Revives a registration expired less than
/// `rd.expiry_grace_s` ago.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Arc<Registration>, RegistryError>")]
pub struct Update {
    pub id: RegistrationId,
    pub lifetime_s: Option<u32>,
    pub base: Option<String>,
    pub attrs: Vec<Param>,
    pub source: SocketAddr,
    /// The requester's DTLS identity; `None` over plain CoAP.
    pub identity: Option<Arc<str>>,
}

/// Delete a registration (RFC 9176 §5.3.2).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Arc<Registration>, RegistryError>")]
pub struct Remove {
    pub id: RegistrationId,
    /// Who asks: a DELETE's source, checked against the write policy (FCFR) inside the
    /// actor, like an update. `None` for the gateway's own removals (discovery), which are
    /// not subject to it.
    pub source: Option<SocketAddr>,
    /// The requester's DTLS identity; `None` over plain CoAP.
    pub identity: Option<Arc<str>>,
}

impl Remove {
    /// A DELETE from `source` (with its DTLS identity), subject to the write policy.
    pub(crate) fn requested_by(
        id: RegistrationId,
        source: SocketAddr,
        identity: Option<Arc<str>>,
    ) -> Self {
        Remove {
            id,
            source: Some(source),
            identity,
        }
    }

    /// The gateway's own removal, not subject to the write policy.
    pub fn by_gateway(id: RegistrationId) -> Self {
        Remove {
            id,
            source: None,
            identity: None,
        }
    }
}

/// Record a liveness change seen by the Pinger. Replies whether the status changed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<bool, RegistryError>")]
pub struct SetStatus {
    pub id: RegistrationId,
    pub status: Status,
}

/// Subscribe to [`RegistryEvent`]s. Subscribers are held as `Recipient`s, so the Registry never
/// names the subscriber's type.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<RegistryEvent>);

/// Why a registration went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    Deleted,
    Expired,
}

impl RemovalReason {}

/// What happened to the registry. Sent to every subscriber, in the order the changes became
/// durable.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum RegistryEvent {
    Registered(Arc<Registration>),
    Updated(Arc<Registration>),
    Removed {
        registration: Arc<Registration>,
        reason: RemovalReason,
    },
    StatusChanged(Arc<Registration>),
}
