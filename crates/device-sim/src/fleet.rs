//! The running fleet of `device-sim`: binds one CoAP `Endpoint` per device on `--bind` (127.0.0.1),
//! registers each with the RD from its own socket (RFC 9176 §5, so the RD derives the base from
//! the device's address), refreshes before the lifetime ends (§5.3.1), samples every device's
//! temperature at each whole second and notifies its observers then, and makes devices silent
//! and wakes them.
//!
//! A silent device drops all traffic: its endpoint is shut down and its socket closed, so the
//! kernel discards whatever arrives (the gateway sees no answer, not even to a ping); waking
//! binds the same port again. Called by [`super::run`]; everything runs on one task, and the
//! network work (registrations, refreshes) on spawned tasks that report back over a channel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use log::{debug, info, warn};
use thiserror::Error;
use tokio::sync::mpsc;

use super::device::{temperature_key, DeviceHandler, RequestCounts, LINKS};
use super::options::SimOptions;
use super::silence::{is_in_silent_fraction, SilenceCommand};
use crate::psk::SimPsk;
use coap_endpoint::{
    ClientError, ClientRequest, CoapClient, CoapError, Code, Endpoint, Method, ServerHandle,
    TransmissionParams,
};

const CT_LINK_FORMAT: u16 = 40;
/// Pause before a failed registration or refresh is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Budget of one registration or refresh exchange (retransmissions included).
const REQUEST_BUDGET: Duration = Duration::from_secs(20);
/// How many times a device tries to register while the fleet starts.
const START_ATTEMPTS: u32 = 5;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("device {index}: {source}")]
    Bind {
        index: usize,
        #[source]
        source: CoapError,
    },
    #[error("device {index} could not register with {rd}: {reason}")]
    Register {
        index: usize,
        rd: SocketAddr,
        reason: String,
    },
    #[error("--first-port {first} + --count {count} goes past port 65535")]
    PortRange { first: u16, count: usize },
    #[error("{0}")]
    Psk(String),
}

/// One device's live parts; `None` while it is silent.
struct Live {
    endpoint: Endpoint,
    client: CoapClient,
    server: ServerHandle,
}

struct Device {
    index: usize,
    ep: String,
    /// Its PSK identity when the fleet speaks DTLS.
    identity: Option<Arc<str>>,
    port: u16,
    live: Option<Live>,
    handler: Arc<DeviceHandler>,
    /// The registration resource, e.g. `/reg/17`.
    location: Option<String>,
    next_refresh: Option<Instant>,
    /// A registration or refresh is on its way.
    busy: bool,
}

/// What a spawned registration or refresh reports back.
enum Outcome {
    Registered {
        index: usize,
        location: String,
    },
    Refreshed {
        index: usize,
    },
    /// The RD no longer knows the registration (4.04): register again.
    Unknown {
        index: usize,
    },
    Failed {
        index: usize,
        reason: String,
    },
}

pub struct Fleet {
    opts: SimOptions,
    psk: Option<SimPsk>,
    devices: Vec<Device>,
    params: TransmissionParams,
    counts: Arc<RequestCounts>,
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes_rx: mpsc::UnboundedReceiver<Outcome>,
}

async fn bind_device(
    opts: &SimOptions,
    psk: Option<&SimPsk>,
    index: usize,
    port: u16,
    params: &TransmissionParams,
    handler: Arc<DeviceHandler>,
) -> Result<Live, CoapError> {
    let addr = SocketAddr::new(opts.bind, port);
    let endpoint = match psk {
        // One DTLS socket: it registers as client and serves the gateway's requests.
        Some(psk) => {
            let config = psk.device_config(index);
            Endpoint::bind_secure(
                &[],
                Some((&[addr], &config)),
                params.clone(),
                handler,
                Arc::new(coap_endpoint::NoHooks),
            )
            .await?
        }
        None => Endpoint::bind(&[addr], params.clone(), handler).await?,
    };
    if opts.join_multicast && psk.is_none() {
        let port = endpoint.local_addrs().first().map_or(port, |a| a.port());
        join_all_coap_nodes(&endpoint, opts.bind, port);
    }
    Ok(Live {
        client: endpoint.client(),
        server: endpoint.server(),
        endpoint,
    })
}

/// All-CoAP-Nodes (RFC 7252 §12.8) of `bind`'s family, on every multicast-capable interface;
/// failures are logged (a device that cannot join still serves unicast).
fn join_all_coap_nodes(endpoint: &Endpoint, bind: IpAddr, port: u16) {
    let group = match bind {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(224, 0, 1, 187)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfd)),
    };
    #[cfg(target_os = "linux")]
    match coap_endpoint::multicast::resolve_interfaces(&[]) {
        Ok(interfaces) if !interfaces.is_empty() => {
            for iface in interfaces {
                if let Err(e) = endpoint.join_multicast(group, port, iface.index) {
                    warn!("device-sim: cannot join {group} on {}: {e}", iface.name);
                }
            }
        }
        Ok(_) => warn!("device-sim: no multicast-capable interface to join {group} on"),
        Err(e) => warn!("device-sim: cannot join {group}: {e}"),
    }
    #[cfg(not(target_os = "linux"))]
    warn!("device-sim: cannot join {group} on {endpoint:p} port {port}: multicast needs Linux");
}

/// The port a device's endpoint is bound to (its DTLS socket when it has one).
fn bound_port(endpoint: &Endpoint, asked: u16) -> u16 {
    endpoint
        .local_addrs()
        .into_iter()
        .chain(endpoint.secure_addrs())
        .next()
        .map_or(asked, |a| a.port())
}

/// Over DTLS as `identity` when the fleet has a PSK.
fn as_device(req: ClientRequest, identity: Option<&Arc<str>>) -> ClientRequest {
    match identity {
        Some(identity) => req.over_dtls(Some(Arc::clone(identity))),
        None => req,
    }
}

fn registration_request(opts: &SimOptions, ep: &str, identity: Option<&Arc<str>>) -> ClientRequest {
    let req = ClientRequest::new(Method::Post, "/rd")
        .query(format!("ep={ep}"))
        .query(format!("lt={}", opts.lt))
        .payload(Some(CT_LINK_FORMAT), LINKS.as_bytes().to_vec())
        .timeout(REQUEST_BUDGET);
    as_device(req, identity)
}

async fn register(client: CoapClient, rd: SocketAddr, req: ClientRequest, index: usize) -> Outcome {
    match client.request(rd, req).await {
        Ok(resp) if resp.code == Code::CREATED && !resp.location_path.is_empty() => {
            Outcome::Registered {
                index,
                location: format!("/{}", resp.location_path.join("/")),
            }
        }
        Ok(resp) => Outcome::Failed {
            index,
            reason: format!("registration answered {}", resp.code),
        },
        Err(e) => Outcome::Failed {
            index,
            reason: e.to_string(),
        },
    }
}

async fn refresh(
    client: CoapClient,
    rd: SocketAddr,
    location: String,
    identity: Option<Arc<str>>,
    index: usize,
) -> Outcome {
    let req = as_device(
        ClientRequest::new(Method::Post, &location).timeout(REQUEST_BUDGET),
        identity.as_ref(),
    );
    match client.request(rd, req).await {
        Ok(resp) if resp.code == Code::CHANGED => Outcome::Refreshed { index },
        Ok(resp) if resp.code == Code::NOT_FOUND => Outcome::Unknown { index },
        Ok(resp) => Outcome::Failed {
            index,
            reason: format!("refresh answered {}", resp.code),
        },
        Err(ClientError::Cancelled) => Outcome::Failed {
            index,
            reason: "went silent".into(),
        },
        Err(e) => Outcome::Failed {
            index,
            reason: e.to_string(),
        },
    }
}

impl Fleet {
    /// Bind every device's socket.
    pub async fn bind(opts: SimOptions) -> Result<Fleet, SimError> {
        if let Some(first) = opts.first_port {
            if first as usize + opts.count > 65_536 {
                return Err(SimError::PortRange {
                    first,
                    count: opts.count,
                });
            }
        }
        let params = TransmissionParams {
            multicast_leisure: Duration::from_millis(opts.multicast_leisure_ms),
            ..Default::default()
        };
        let counts = Arc::new(RequestCounts::default());
        let psk =
            SimPsk::from_options(opts.psk_identity_prefix.as_deref(), opts.psk_hex.as_deref())
                .map_err(SimError::Psk)?;
        let mut devices = Vec::with_capacity(opts.count);
        for index in 0..opts.count {
            let port = opts.first_port.map_or(0, |p| p + index as u16);
            let handler = Arc::new(DeviceHandler::new(index, Arc::clone(&counts)));
            let live = bind_device(&opts, psk.as_ref(), index, port, &params, handler.clone())
                .await
                .map_err(|source| SimError::Bind { index, source })?;
            let port = bound_port(&live.endpoint, port);
            let ep = format!("{}{index}", opts.prefix);
            debug!("device-sim: {ep} on {}", SocketAddr::new(opts.bind, port));
            devices.push(Device {
                index,
                identity: psk.as_ref().map(|p| p.identity(index)),
                ep,
                port,
                live: Some(live),
                handler,
                location: None,
                next_refresh: None,
                busy: false,
            });
        }
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        Ok(Fleet {
            opts,
            psk,
            devices,
            params,
            counts,
            outcomes_tx,
            outcomes_rx,
        })
    }

    pub fn counts(&self) -> Arc<RequestCounts> {
        Arc::clone(&self.counts)
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    fn refresh_period(&self) -> Duration {
        Duration::from_millis(u64::from(self.opts.lt.max(1)) * 750)
    }

    /// Register every device, `register_concurrency` at a time, each tried up to
    /// [`START_ATTEMPTS`] times.
    pub async fn register_all(&mut self) -> Result<(), SimError> {
        let rd = self.opts.rd;
        let limit = self.opts.register_concurrency.max(1);
        let mut queue: Vec<(usize, u32)> = (0..self.devices.len()).rev().map(|i| (i, 0)).collect();
        let mut running = FuturesUnordered::new();
        let started = Instant::now();
        let (mut sample_at, _) = super::next_whole_second();
        loop {
            while running.len() < limit {
                let Some((index, tries)) = queue.pop() else {
                    break;
                };
                let dev = &self.devices[index];
                let Some(live) = &dev.live else { continue };
                let req = registration_request(&self.opts, &dev.ep, dev.identity.as_ref());
                let client = live.client.clone();
                running.push(async move {
                    if tries > 0 {
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                    (register(client, rd, req, index).await, tries)
                });
            }
            // The devices keep sampling (and notifying whoever already observes them) while
            // the rest register, so no device's value stands still during a long start.
            let next = tokio::select! {
                next = running.next() => next,
                _ = tokio::time::sleep_until(sample_at) => {
                    self.sample(crate::time::now_ms() / 1000);
                    sample_at = super::next_whole_second().0;
                    continue;
                }
            };
            let Some((outcome, tries)) = next else {
                break;
            };
            match outcome {
                Outcome::Registered { index, location } => self.on_registered(index, location),
                Outcome::Failed { index, reason } if tries + 1 < START_ATTEMPTS => {
                    debug!(
                        "device-sim: {} registration failed ({reason}), retrying",
                        self.devices[index].ep
                    );
                    queue.push((index, tries + 1));
                }
                Outcome::Failed { index, reason } => {
                    return Err(SimError::Register { index, rd, reason })
                }
                Outcome::Refreshed { .. } | Outcome::Unknown { .. } => {}
            }
        }
        info!(
            "device-sim: {} devices registered in {} ms",
            self.devices.len(),
            started.elapsed().as_millis()
        );
        Ok(())
    }

    fn on_registered(&mut self, index: usize, location: String) {
        let period = self.refresh_period();
        let dev = &mut self.devices[index];
        debug!("device-sim: {} registered at {location}", dev.ep);
        dev.location = Some(location);
        dev.next_refresh = Some(Instant::now() + period);
        dev.busy = false;
    }

    /// Devices of the silent fraction.
    fn fraction(&self) -> Vec<usize> {
        (0..self.devices.len())
            .filter(|&i| is_in_silent_fraction(i, self.opts.silent_fraction))
            .collect()
    }

    /// Carry out `command`; the one-line reply says what it did (`device-sim` prints it).
    pub async fn apply(&mut self, command: SilenceCommand) -> String {
        let reply = match &command {
            SilenceCommand::Silent(i) => self.silence(*i).await,
            SilenceCommand::Wake(i) => self.wake(*i).await,
            SilenceCommand::SilentAll | SilenceCommand::SilentFraction => {
                let picked = self.picked(&command);
                let mut changed = 0;
                for &i in &picked {
                    changed += usize::from(self.silence(i).await.ends_with("is silent"));
                }
                format!("{} devices silent ({changed} newly)", picked.len())
            }
            SilenceCommand::WakeAll | SilenceCommand::WakeFraction => {
                let picked = self.picked(&command);
                let mut failed = 0;
                for &i in &picked {
                    failed += usize::from(self.wake(i).await.contains("cannot wake"));
                }
                format!(
                    "{} devices answer ({failed} could not rebind yet)",
                    picked.len() - failed
                )
            }
        };
        let reply = format!("device-sim: {command}: {reply}");
        debug!("{reply}");
        reply
    }

    /// The devices a group command acts on.
    fn picked(&self, command: &SilenceCommand) -> Vec<usize> {
        match command {
            SilenceCommand::SilentFraction | SilenceCommand::WakeFraction => self.fraction(),
            _ => (0..self.devices.len()).collect(),
        }
    }

    async fn silence(&mut self, index: usize) -> String {
        let count = self.devices.len();
        let Some(dev) = self.devices.get_mut(index) else {
            return format!(
                "no device {index} (devices are 0..={})",
                count.saturating_sub(1)
            );
        };
        let Some(live) = dev.live.take() else {
            return format!("{} was already silent", dev.ep);
        };
        let Live {
            endpoint,
            client,
            server,
        } = live;
        drop((client, server));
        endpoint.shutdown().await;
        format!("{} is silent", dev.ep)
    }

    async fn wake(&mut self, index: usize) -> String {
        let count = self.devices.len();
        let Some(dev) = self.devices.get_mut(index) else {
            return format!(
                "no device {index} (devices are 0..={})",
                count.saturating_sub(1)
            );
        };
        if dev.live.is_some() {
            return format!("{} was already answering", dev.ep);
        }
        let psk = self.psk.as_ref();
        match bind_device(
            &self.opts,
            psk,
            dev.index,
            dev.port,
            &self.params,
            dev.handler.clone(),
        )
        .await
        {
            Ok(live) => {
                dev.live = Some(live);
                format!("{} answers again", dev.ep)
            }
            // Most likely a refresh still holds the old socket: try the command again.
            Err(e) => format!("{} cannot wake yet: {e}", dev.ep),
        }
    }

    /// At each whole Unix second `now_s`: every device samples its sensor, and the observers
    /// of every device with a new value are notified, all in this one pass (no lockstep of
    /// devices drifting across second boundaries). A device notifies at most once per second whatever the timers do.
    pub fn sample(&mut self, now_s: u64) {
        let key = temperature_key();
        let mut notified = 0;
        for dev in &self.devices {
            let Some(live) = &dev.live else { continue };
            if dev.handler.sample(now_s) && live.server.observer_count(&key) > 0 {
                live.server.notify(&key);
                notified += 1;
            }
        }
        self.counts.notified_per_second.add(now_s, notified);
    }

    /// Every [`super::TICK`]: send due refreshes (and registrations that failed before).
    pub fn tick(&mut self) {
        let now = Instant::now();
        for dev in &mut self.devices {
            let Some(live) = &dev.live else { continue };
            if dev.busy || dev.next_refresh.is_none_or(|t| t > now) {
                continue;
            }
            dev.busy = true;
            let client = live.client.clone();
            let tx = self.outcomes_tx.clone();
            let rd = self.opts.rd;
            let index = dev.index;
            let outcome = match &dev.location {
                Some(location) => {
                    let location = location.clone();
                    let identity = dev.identity.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(refresh(client, rd, location, identity, index).await);
                    })
                }
                None => {
                    let req = registration_request(&self.opts, &dev.ep, dev.identity.as_ref());
                    tokio::spawn(async move {
                        let _ = tx.send(register(client, rd, req, index).await);
                    })
                }
            };
            drop(outcome);
        }
    }

    /// Wait for the next registration or refresh outcome.
    pub async fn next_outcome(&mut self) {
        let Some(outcome) = self.outcomes_rx.recv().await else {
            return;
        };
        let retry_at = Instant::now() + RETRY_AFTER;
        let period = self.refresh_period();
        match outcome {
            Outcome::Registered { index, location } => self.on_registered(index, location),
            Outcome::Refreshed { index } => {
                let dev = &mut self.devices[index];
                dev.busy = false;
                dev.next_refresh = Some(Instant::now() + period);
            }
            Outcome::Unknown { index } => {
                let dev = &mut self.devices[index];
                info!(
                    "device-sim: {} was forgotten by the RD, registering again",
                    dev.ep
                );
                dev.busy = false;
                dev.location = None;
                dev.next_refresh = Some(Instant::now());
            }
            Outcome::Failed { index, reason } => {
                let dev = &mut self.devices[index];
                debug!("device-sim: {}: {reason}", dev.ep);
                dev.busy = false;
                dev.next_refresh = Some(retry_at);
            }
        }
    }
}
