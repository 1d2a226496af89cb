//! Browsing mDNS for `_coap._udp` devices (`discovery.mdns`): each resolved service
//! becomes one address for the Discovery actor (`AddMdnsTarget`), each goodbye or expiry a
//! `RemoveMdnsTarget` (RFC 6762 §10.1, RFC 6763 §4-5). The Discovery actor then asks and
//! registers the device exactly like a configured unicast target.
//!
//! Started by `gateway::start`; the forwarding task runs on the caller's arbiter and ends when
//! the daemon shuts down (its event channel closes).

use std::net::{SocketAddr, SocketAddrV6};

use actix::Recipient;
use log::{debug, info};
use mdns_sd::{ResolvedService, ScopedIp, ServiceEvent};

use super::error::DnssdError;
use super::naming::COAP_SERVICE_TYPE;
use super::responder::Mdns;
use super::target::pick_device_addr;
use crate::discovery::{AddMdnsTarget, RemoveMdnsTarget};

/// Start browsing `_coap._udp.local.` and forward what is found.
pub(crate) fn browse_coap(
    mdns: &Mdns,
    found: Recipient<AddMdnsTarget>,
    gone: Recipient<RemoveMdnsTarget>,
) -> Result<(), DnssdError> {
    let events = mdns
        .daemon()
        .browse(COAP_SERVICE_TYPE)
        .map_err(|source| DnssdError::Command {
            what: "browse _coap._udp",
            source,
        })?;
    info!("dnssd: browsing {COAP_SERVICE_TYPE} for passive devices");
    actix::spawn(async move {
        while let Ok(event) = events.recv_async().await {
            match event {
                ServiceEvent::ServiceResolved(service) => {
                    let instance = service.fullname.clone();
                    match service_addr(&service) {
                        Some(addr) => {
                            debug!("dnssd: {instance} resolved to {addr}");
                            found.do_send(AddMdnsTarget { instance, addr });
                        }
                        None => debug!("dnssd: {instance} has no usable address; ignored"),
                    }
                }
                ServiceEvent::ServiceRemoved(_, instance) => {
                    debug!("dnssd: {instance} withdrawn");
                    gone.do_send(RemoveMdnsTarget { instance });
                }
                other => debug!("dnssd: browse event {other:?}"),
            }
        }
        debug!("dnssd: browsing ended (daemon stopped)");
    });
    Ok(())
}

/// The one address of `service` worth asking.
fn service_addr(service: &ResolvedService) -> Option<SocketAddr> {
    let port = service.port;
    let candidates = service.addresses.iter().filter_map(|ip| match ip {
        ScopedIp::V4(v4) => Some(SocketAddr::from((*v4.addr(), port))),
        ScopedIp::V6(v6) => Some(SocketAddr::V6(SocketAddrV6::new(
            *v6.addr(),
            port,
            0,
            v6.scope_id().index,
        ))),
        _ => None,
    });
    pick_device_addr(candidates)
}
