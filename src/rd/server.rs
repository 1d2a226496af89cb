//! The RdServer actor: owns the RD's CoAP endpoint and turns registry changes into Observe
//! notifications for clients observing `/rd-lookup/*` (RFC 9176 §6.2, RFC 7641).
//!
//! Requests themselves do not pass through the actor: the endpoint calls [`RdService`] directly
//! (reads from the shared index, writes as messages to the Registry), so a lookup costs no
//! actor hop. The actor only coalesces bursts of registry events into one notification round.
//!
//! With `rd.multicast`, [`RunningRd::join_multicast`] makes the endpoint's wildcard sockets
//! members of All-CoRE-RDs and All-CoAP-Nodes (`rd::multicast`), once, at start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{error, info, warn};

use super::drain::DrainGate;
use super::service::{lookup_observe_key, RdService, RdSettings};
use crate::coap::{
    CoapClient, CoapError, DtlsServerConfig, Endpoint, ServerHandle, TransmissionParams,
};
use crate::coap_metrics::MetricsHooks;
use crate::registry::subscription::SUBSCRIBER_MAILBOX;
use crate::registry::{Registry, RegistryEvent, RegistryFeed, RegistryReader, SubscribeFeed};

/// Registry events within this window share one notification round: a burst of registrations
/// must not become a burst of full lookup results per observer.
const NOTIFY_COALESCE: Duration = Duration::from_millis(50);

/// The actor; see the module doc.
pub(crate) struct RdServer {
    server: ServerHandle,
    notify_scheduled: bool,
}

impl Actor for RdServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(SUBSCRIBER_MAILBOX);
    }
}

impl RdServer {
    /// Lookup observers get one notification round per `NOTIFY_COALESCE`, whatever changed.
    fn registry_changed(&mut self, ctx: &mut Context<Self>) {
        if self.notify_scheduled {
            return;
        }
        self.notify_scheduled = true;
        ctx.run_later(NOTIFY_COALESCE, |act, _| {
            act.notify_scheduled = false;
            act.server.notify(&lookup_observe_key());
        });
    }
}

impl Handler<RegistryEvent> for RdServer {
    type Result = ();

    fn handle(&mut self, _event: RegistryEvent, ctx: &mut Context<Self>) {
        self.registry_changed(ctx);
    }
}

impl Handler<RegistryFeed> for RdServer {
    type Result = ();

    /// A `Resync` (events were dropped for this actor) is answered like any change: every
    /// lookup observer is notified, and each notification is rendered from the index.
    fn handle(&mut self, _feed: RegistryFeed, ctx: &mut Context<Self>) {
        self.registry_changed(ctx);
    }
}

/// A running RD: its endpoint (for the CoAP client other actors use) and its actor.
pub struct RunningRd {
    endpoint: Endpoint,
    gate: Arc<DrainGate<RdService>>,
    pub(crate) actor: Addr<RdServer>,
}

impl RunningRd {
    /// The bound addresses (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.endpoint.local_addrs()
    }

    /// The bound coaps addresses (port 0 resolved); empty without DTLS.
    pub fn secure_addrs(&self) -> Vec<SocketAddr> {
        self.endpoint.secure_addrs()
    }

    /// The coaps listener's counters (for /metrics); `None` without one.
    pub fn dtls_stats(&self) -> Option<Arc<crate::coap::DtlsStats>> {
        (!self.endpoint.secure_addrs().is_empty()).then(|| self.endpoint.dtls_stats())
    }

    /// The endpoint, for the DTLS session controls (reload) and counters.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The client that sends from the RD's sockets (pings, commands, polls, observations).
    pub(crate) fn client(&self) -> CoapClient {
        self.endpoint.client()
    }

    /// First step of a graceful stop: from now on requests get 5.03 + Max-Age and nothing new
    /// is written; lookup observers get that 5.03 as their final notification (RFC 7641 §4.2).
    /// Returns once the requests already inside the RD are answered and every lookup observer
    /// acknowledged its 5.03, or after `budget`. The endpoint keeps running (the gateway's own
    /// requests, e.g. observation deregistrations, still go out) until `shutdown`.
    pub(crate) async fn drain(&self, budget: Duration) {
        self.gate.close();
        let server = self.endpoint.server();
        let key = lookup_observe_key();
        server.notify(&key);
        let deadline = tokio::time::Instant::now() + budget;
        while self.gate.in_service() > 0 || server.observer_count(&key) > 0 {
            if tokio::time::Instant::now() >= deadline {
                log::warn!(
                    "rd: stopping with {} requests unanswered and {} lookup observers not told",
                    self.gate.in_service(),
                    server.observer_count(&key)
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop serving: close the sockets and cancel pending client exchanges.
    pub async fn shutdown(self) {
        self.actor.do_send(StopRd);
        self.endpoint.shutdown().await;
    }
}

/// Why the RD could not join its multicast groups; the gateway does not start then.
#[derive(Debug, thiserror::Error)]
pub enum MulticastError {
    #[cfg(target_os = "linux")]
    #[error("rd.multicast_interfaces: {0}")]
    Interfaces(#[from] crate::coap::multicast::InterfaceError),
    #[error("rd.multicast: no group could be joined on any interface ({0})")]
    NothingJoined(String),
    #[error("rd.multicast is only supported on Linux")]
    Unsupported,
}

impl RunningRd {
    /// Join every RD group (All-CoRE-RDs, All-CoAP-Nodes) on the interfaces named in
    /// `interfaces` (empty: every interface that is up, multicast-capable and not loopback),
    /// with the sockets bound to `0.0.0.0` / `[::]`. Each membership and each failure is
    /// logged; returns how many memberships were made. An unknown interface name, or nothing
    /// joined at all, is an error; finding no interface to default to is logged as an error
    /// and returns 0 (the RD still serves unicast).
    #[cfg(target_os = "linux")]
    pub(crate) fn join_multicast(&self, interfaces: &[String]) -> Result<usize, MulticastError> {
        let chosen = crate::coap::multicast::resolve_interfaces(interfaces)?;
        if chosen.is_empty() {
            error!(
                "rd.multicast is on but no interface is up, multicast-capable and not loopback: \
                 multicast discovery is OFF (name interfaces in rd.multicast_interfaces)"
            );
            return Ok(0);
        }
        let port = super::multicast::RD_MULTICAST_PORT;
        let mut joined = 0;
        let mut last_error = String::new();
        for (v4, listener) in [(true, "0.0.0.0"), (false, "[::]")] {
            let bound = self
                .local_addrs()
                .iter()
                .any(|a| a.is_ipv4() == v4 && a.ip().is_unspecified() && a.port() == port);
            if !bound {
                info!("rd multicast: no {listener}:{port} in rd.listen, its groups are not joined");
            }
        }
        for group in super::multicast::rd_groups() {
            let bound = self.local_addrs().iter().any(|a| {
                a.is_ipv4() == group.is_ipv4() && a.ip().is_unspecified() && a.port() == port
            });
            if !bound {
                continue;
            }
            for iface in &chosen {
                match self.endpoint.join_multicast(group, port, iface.index) {
                    Ok(()) => {
                        info!(
                            "rd multicast: joined {group} on {} (port {port})",
                            iface.name
                        );
                        joined += 1;
                    }
                    Err(e) => {
                        warn!("rd multicast: cannot join {group} on {}: {e}", iface.name);
                        last_error = format!("{group} on {}: {e}", iface.name);
                    }
                }
            }
        }
        if joined == 0 {
            return Err(MulticastError::NothingJoined(last_error));
        }
        Ok(joined)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn join_multicast(&self, _interfaces: &[String]) -> Result<usize, MulticastError> {
        Err(MulticastError::Unsupported)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopRd;

impl Handler<StopRd> for RdServer {
    type Result = ();
    fn handle(&mut self, _: StopRd, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Bind the RD's sockets and start serving. Must run inside an actix system.
pub(crate) async fn start(
    listen: &[SocketAddr],
    dtls: Option<(&[SocketAddr], &DtlsServerConfig)>,
    params: TransmissionParams,
    settings: Arc<RdSettings>,
    registry: Addr<Registry>,
    reader: RegistryReader,
) -> Result<RunningRd, CoapError> {
    let service = Arc::new(RdService::new(settings, registry.clone(), reader));
    let gate = Arc::new(DrainGate::new(service.clone()));
    // The RD's endpoint counts its responses in the process-wide metrics.
    let endpoint =
        Endpoint::bind_secure(listen, dtls, params, gate.clone(), Arc::new(MetricsHooks)).await?;
    service.set_client(endpoint.client());
    let actor = RdServer {
        server: endpoint.server(),
        notify_scheduled: false,
    }
    .start();
    registry.do_send(SubscribeFeed(actor.clone().recipient()));
    Ok(RunningRd {
        endpoint,
        gate,
        actor,
    })
}
