//! The gateway's one mDNS daemon, a plain owned handle rather than an actor: the
//! `mdns-sd` daemon is already a thread of its own with a command channel, so an actor would
//! only add a second queue. It advertises the RD's UDP listeners as `_core-rd._udp` (RFC 9176
//! §4.1.2, RFC 6763) and is shared by `browse` for `discovery.mdns`.
//!
//! `gateway::start` creates it first, and only when `rd.dnssd` or `discovery.mdns` is set (see
//! `Config::needs_mdns`): otherwise nothing binds port 5353 or sends mDNS. Before the daemon
//! starts, port 5353 is probed, since the daemon itself would run on without sockets. On shutdown the
//! gateway calls [`Mdns::shutdown`] first, so the goodbye packets (RFC 6762 §10.1, TTL 0) go out
//! before the RD stops answering.
//!
//! Resources: one thread (`mDNS_daemon`, a mio poll loop), one UDP socket per family bound to
//! port 5353 on 0.0.0.0 and [::] (address reuse, so it coexists with avahi), joined to
//! 224.0.0.251 / ff02::fb on each selected interface, plus a forwarding task per event channel
//! on the caller's arbiter.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use log::{debug, info, warn};
use mdns_sd::{DaemonEvent, IfKind, IfPredicate, ServiceDaemon, ServiceInfo, UnregisterStatus};

use super::error::DnssdError;
use super::naming::{host_name, instance_name, replica_names, txt_records, RD_SERVICE_TYPE};
use super::plan::{plan_adverts, Advert};

/// `mdns-sd` repeats each goodbye once, 120 ms after the first; shutdown waits this long for it.
const GOODBYE_REPEAT: Duration = Duration::from_millis(200);

/// What the RD advertisement needs to know about the gateway.
#[derive(Debug, Clone)]
pub(crate) struct RdAdvertisement {
    /// `gateway.id`: the instance name and host name derive from it.
    pub gateway_id: String,
    /// The addresses the RD actually bound (ports resolved).
    pub listeners: Vec<SocketAddr>,
    /// `rd.simple_registration`: adds the `simple` TXT key.
    pub simple_registration: bool,
    /// Replicas on etcd: this replica's member name, so each replica has an instance and host
    /// of its own and the TXT key `cluster`.
    pub member: Option<String>,
}

/// The running mDNS daemon and what it advertises.
pub(crate) struct Mdns {
    daemon: ServiceDaemon,
    /// Full names of the registered instances, withdrawn on shutdown.
    advertised: Vec<String>,
    /// `shutdown` ran (or is running): `Drop` has nothing left to do.
    stop_requested: bool,
}

/// A handle dropped without [`Mdns::shutdown`] (an error path, an embedding test) still stops
/// the daemon thread, which otherwise keeps answering on the network after its owner is gone.
/// The daemon sends goodbyes for what it still advertises as it exits; nothing waits for them.
impl Drop for Mdns {
    fn drop(&mut self) {
        if !self.stop_requested {
            if let Err(e) = self.daemon.shutdown() {
                debug!("dnssd: stopping the mDNS daemon on drop: {e}");
            }
        }
    }
}

impl Mdns {
    /// Start the daemon, restricted to `interfaces` (by name) when that is not empty. Must run
    /// on an actix arbiter (the daemon's events are logged by a task on it).
    pub(crate) fn start(interfaces: &[String]) -> Result<Mdns, DnssdError> {
        probe_mdns_port()?;
        let daemon = ServiceDaemon::new().map_err(DnssdError::Daemon)?;
        let command = |what| move |source| DnssdError::Command { what, source };
        for name in interfaces {
            // Not an error: an interface may appear later (the daemon rechecks periodically).
            if !std::path::Path::new("/sys/class/net").join(name).exists() {
                warn!("dnssd: interface {name:?} (rd.dnssd_interfaces) does not exist (yet)");
            }
        }
        if !interfaces.is_empty() {
            // The last matching selection wins: everything off, then the named ones on.
            daemon
                .disable_interface(IfKind::All)
                .map_err(command("disable_interface"))?;
            let named: Vec<IfKind> = interfaces.iter().cloned().map(IfKind::Name).collect();
            daemon
                .enable_interface(named)
                .map_err(command("enable_interface"))?;
        }
        let events = daemon.monitor().map_err(command("monitor"))?;
        actix::spawn(async move {
            while let Ok(event) = events.recv_async().await {
                log_daemon_event(event);
            }
        });
        info!(
            "dnssd: mDNS daemon started on {}",
            if interfaces.is_empty() {
                "every interface".to_string()
            } else {
                format!("interfaces {}", interfaces.join(", "))
            }
        );
        Ok(Mdns {
            daemon,
            advertised: Vec::new(),
            stop_requested: false,
        })
    }

    /// The daemon, for browsing.
    pub(crate) fn daemon(&self) -> &ServiceDaemon {
        &self.daemon
    }

    /// Register one `_core-rd._udp` instance per listening port.
    pub(crate) fn advertise_rd(&mut self, rd: &RdAdvertisement) -> Result<(), DnssdError> {
        let (instance, host) = match &rd.member {
            Some(member) => replica_names(&rd.gateway_id, member),
            None => (instance_name(&rd.gateway_id), host_name(&rd.gateway_id)),
        };
        let cluster = rd.member.as_ref().map(|_| rd.gateway_id.as_str());
        let txt = txt_records(rd.simple_registration, cluster);
        let txt: Vec<(&str, &str)> = txt.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for advert in plan_adverts(&instance, &host, &rd.listeners) {
            let info = service_info(&advert, &txt)?;
            let fullname = info.get_fullname().to_string();
            self.daemon
                .register(info)
                .map_err(|source| DnssdError::Command {
                    what: "register",
                    source,
                })?;
            info!(
                "dnssd: advertising {fullname:?} on port {} as {} ({})",
                advert.port,
                advert.host,
                describe_addrs(&advert)
            );
            self.advertised.push(fullname);
        }
        Ok(())
    }

    /// Withdraw every advertisement (goodbye packets) and stop the daemon, within `budget`.
    pub(crate) async fn shutdown(mut self, budget: Duration) {
        self.stop_requested = true;
        let deadline = tokio::time::Instant::now() + budget;
        for fullname in &self.advertised {
            let status = match self.daemon.unregister(fullname) {
                Ok(rx) => tokio::time::timeout_at(deadline, rx.recv_async()).await,
                Err(e) => {
                    warn!("dnssd: cannot withdraw {fullname:?}: {e}");
                    continue;
                }
            };
            match status {
                Ok(Ok(UnregisterStatus::OK)) => info!("dnssd: withdrew {fullname:?}"),
                Ok(Ok(other)) => warn!("dnssd: withdrawing {fullname:?}: {other:?}"),
                Ok(Err(_)) => warn!("dnssd: the daemon stopped before withdrawing {fullname:?}"),
                Err(_) => warn!("dnssd: withdrawing {fullname:?} took longer than {budget:?}"),
            }
        }
        if !self.advertised.is_empty() {
            // Let the daemon send its repeated goodbye before it exits.
            let repeat = tokio::time::Instant::now() + GOODBYE_REPEAT;
            tokio::time::sleep_until(repeat.min(deadline)).await;
        }
        match self.daemon.shutdown() {
            Ok(rx) => {
                if tokio::time::timeout_at(deadline, rx.recv_async())
                    .await
                    .is_err()
                {
                    warn!("dnssd: the mDNS daemon did not stop within {budget:?}");
                } else {
                    debug!("dnssd: mDNS daemon stopped");
                }
            }
            Err(e) => warn!("dnssd: cannot stop the mDNS daemon: {e}"),
        }
    }
}

/// The daemon binds its sockets on its own thread and, when that fails, silently runs without
/// them; so bind the mDNS port first the way it will (address and port reuse, not IPv6-only)
/// and refuse to start when neither family can have it. The probe sockets send nothing.
fn probe_mdns_port() -> Result<(), DnssdError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = |addr: SocketAddr| -> std::io::Result<()> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())
    };
    let v4 = probe(SocketAddr::from(([0, 0, 0, 0], mdns_sd::MDNS_PORT)));
    let v6 = probe(SocketAddr::from(([0u16; 8], mdns_sd::MDNS_PORT)));
    match (v4, v6) {
        (Err(v4), Err(v6)) => Err(DnssdError::Port { v4, v6 }),
        (Err(e), Ok(())) => {
            warn!("dnssd: IPv4 mDNS unavailable (UDP 0.0.0.0:5353: {e}); IPv6 only");
            Ok(())
        }
        (Ok(()), Err(e)) => {
            warn!("dnssd: IPv6 mDNS unavailable (UDP [::]:5353: {e}); IPv4 only");
            Ok(())
        }
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// The `mdns-sd` description of one advertisement.
fn service_info(advert: &Advert, txt: &[(&str, &str)]) -> Result<ServiceInfo, DnssdError> {
    let mut info = ServiceInfo::new(
        RD_SERVICE_TYPE,
        &advert.instance,
        &advert.host,
        &advert.addrs[..],
        advert.port,
        txt,
    )
    .map_err(|source| DnssdError::Service {
        instance: advert.instance.clone(),
        source,
    })?;
    if advert.auto_v4 || advert.auto_v6 {
        // Only the family that is listened on: a 0.0.0.0 listener must not publish AAAA records
        // for addresses where nothing answers.
        let (v4, v6) = (advert.auto_v4, advert.auto_v6);
        info = info.enable_addr_auto();
        info.set_interfaces(vec![IfKind::Predicate(IfPredicate::new(move |intf| {
            if intf.ip().is_ipv4() {
                v4
            } else {
                v6
            }
        }))]);
    }
    Ok(info)
}

fn describe_addrs(advert: &Advert) -> String {
    let mut parts: Vec<String> = advert.addrs.iter().map(IpAddr::to_string).collect();
    if advert.auto_v4 {
        parts.push("every IPv4 interface address".into());
    }
    if advert.auto_v6 {
        parts.push("every IPv6 interface address".into());
    }
    parts.join(", ")
}

fn log_daemon_event(event: DaemonEvent) {
    match event {
        DaemonEvent::Error(e) => warn!("dnssd: mDNS daemon: {e}"),
        DaemonEvent::NameChange(change) => warn!(
            "dnssd: name conflict (RFC 6762 §9): {} is now {}",
            change.original, change.new_name
        ),
        other => debug!("dnssd: {other:?}"),
    }
}
