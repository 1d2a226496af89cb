//! The Observer actor: for every live registration it watches the links chosen by
//! `observer.select` and hands each value to PlatformLink as a `data` frame (an error answer as
//! `data_error`).
//!
//! A device's watch is rebuilt when it registers, when its address or selected links change
//! (an update), and when it returns to status 1; it is cancelled when the device goes to status
//! 0, is removed or expires. Every watch carries a generation, so values from an old watch are
//! never forwarded. Registry events come through the bounded registry feed; on its `Resync` the
//! Observer re-scans the registrations in the index.
//!
//! How a link is watched lives beside: `observation` (one task per observed link), `poll`
//! (GET on a schedule), `forward` (the bounded queue and the frames to the platform), `stats`
//! (counters and their log line).
//!
//! Started by `gateway::start` when `observer.enabled` and a platform is configured. On
//! replicas on etcd every replica runs one for the registrations it owns (`Ownership`), and
//! its frames go to `cluster::data_relay` instead of a PlatformLink.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{debug, info};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::forward::{frame_rate, queue_capacity, Notified, HANDOFF};
use super::observation::ObservationTask;
use super::poll::{Due, TICK};
use super::readings::Readings;
use super::schedule::first_due_ms;
use super::settings::ObserverSettings;
use super::stats::{Stats, STATS_EVERY};
use super::strategy::{watched_links, Reading, Watched};
use crate::coap::CoapClient;
use crate::limits::TokenBucket;
use crate::pinger::{dtls_of, registration_target};
use crate::platform::DataFrames;
use crate::rd::resolve::gateway_may_contact;
use crate::registry::etcd::Ownership;
use crate::registry::subscription::SUBSCRIBER_MAILBOX;
use crate::registry::{
    FeedItem, Registration, RegistrationId, RegistryEvent, RegistryFeed, RegistryReader, Status,
};
use crate::time::now_ms;

/// How long a stop waits for the deregistration GETs (a silent device must not hold it up).
const DEREGISTER_BUDGET: Duration = Duration::from_secs(2);

/// How often a replica looks whether its ownership changed (a takeover or hand-over).
const OWNERSHIP_CHECK: Duration = Duration::from_millis(250);

/// Stop observing and polling (sent by the gateway before the CoAP endpoint shuts down).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopObserver;

/// One device being watched.
pub(super) struct Device {
    pub(super) reg: Arc<Registration>,
    pub(super) peer: SocketAddr,
    pub(super) generation: u64,
    pub(super) links: Vec<Watched>,
    /// Dropping a sender (or sending on it) cancels that observation.
    pub(super) cancels: Vec<oneshot::Sender<()>>,
    /// The observation tasks; awaited on `StopObserver` so that their deregistrations leave
    /// before the endpoint closes.
    pub(super) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(super) bucket: TokenBucket,
    pub(super) last_poll: HashMap<Arc<str>, Reading>,
    /// Polled links whose last answers were errors: how many in a row.
    pub(super) poll_errors: HashMap<Arc<str>, u32>,
}

pub(crate) struct Observer {
    pub(super) settings: ObserverSettings,
    reader: RegistryReader,
    pub(super) client: CoapClient,
    pub(super) platform: Recipient<DataFrames>,
    /// The bounded queue of values: observation tasks and polls send, the actor drains.
    pub(super) queue_tx: mpsc::Sender<Notified>,
    /// Taken by the drain loop when the actor starts.
    queue_rx: Option<mpsc::Receiver<Notified>>,
    /// Hand-off permits: frames given to the link and not yet taken by it.
    pub(super) handoff: Arc<Semaphore>,
    pub(super) devices: HashMap<RegistrationId, Device>,
    pub(super) polls: BinaryHeap<Reverse<Due>>,
    pub(super) polls_in_flight: usize,
    setups: Arc<Semaphore>,
    pub(super) watched: usize,
    next_generation: u64,
    pub(super) stats: Arc<Stats>,
    pub(super) last_logged: [u64; 10],
    /// With replicas (`registry.backend: etcd`): only registrations this replica owns are
    /// watched, and the standing last acted on ([`standing`]).
    ownership: Option<(Ownership, (u64, bool))>,
    /// The latest value of each watched resource, for the console (`admin`).
    pub(super) readings: Readings,
}

impl Observer {
    pub(crate) fn new(
        settings: ObserverSettings,
        reader: RegistryReader,
        client: CoapClient,
        platform: Recipient<DataFrames>,
    ) -> Self {
        let setups = Arc::new(Semaphore::new(settings.max_in_flight));
        let (queue_tx, queue_rx) = mpsc::channel(queue_capacity(settings.max_watched));
        Observer {
            settings,
            reader,
            client,
            platform,
            queue_tx,
            queue_rx: Some(queue_rx),
            handoff: Arc::new(Semaphore::new(HANDOFF)),
            devices: HashMap::new(),
            polls: BinaryHeap::new(),
            polls_in_flight: 0,
            setups,
            watched: 0,
            next_generation: 1,
            stats: Arc::default(),
            last_logged: [0; 10],
            ownership: None,
            readings: Readings::default(),
        }
    }

    /// Watch only what this replica owns (`docs/ha-etcd.md` §7): its data goes to the leader
    /// through `cluster::data_relay`.
    pub(crate) fn with_ownership(mut self, ownership: Ownership) -> Self {
        let standing = standing(&ownership);
        self.ownership = Some((ownership, standing));
        self
    }

    fn owns(&self, id: RegistrationId) -> bool {
        self.ownership.as_ref().is_none_or(|(o, _)| o.owns(id))
    }

    /// A member came or went, this replica took up its duties or lost its lease: release what
    /// it no longer owns (each observation deregisters) and watch what it gained.
    fn check_ownership(&mut self) {
        let Some((ownership, seen)) = &mut self.ownership else {
            return;
        };
        let now = standing(ownership);
        if now != *seen {
            *seen = now;
            self.rescan("ownership changed");
        }
    }

    /// Bring one device's watch in line with its registration.
    fn sync(&mut self, reg: &Arc<Registration>, force: bool) {
        if reg.status == Status::Disconnected || !self.owns(reg.id) {
            self.stop_device(reg.id);
            return;
        }
        let peer = match registration_target(&reg.base, reg.source) {
            Ok(peer) => peer,
            Err(e) => {
                debug!("observer: not watching {} ({}): {e}", reg.ep, reg.id);
                self.stop_device(reg.id);
                return;
            }
        };
        // A base stored by an older version (before the RD refused such bases) may name the
        // gateway's own host for a registrant elsewhere; its data must not stream to the
        // platform.
        if !gateway_may_contact(peer.ip(), reg.source.ip()) {
            if !self.devices.contains_key(&reg.id) {
                info!(
                    "observer: not watching {} ({}): base {} names the gateway's own host and it \
                     registered from {}",
                    reg.ep, reg.id, reg.base, reg.source
                );
            }
            self.stop_device(reg.id);
            return;
        }
        let links = watched_links(&self.settings.selection, reg);
        if let Some(dev) = self.devices.get_mut(&reg.id) {
            if !force && dev.peer == peer && dev.links == links {
                dev.reg = Arc::clone(reg);
                return;
            }
        }
        self.stop_device(reg.id);
        if links.is_empty() {
            return;
        }
        if self.watched + links.len() > self.settings.max_watched {
            self.stats.capped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.start_device(Arc::clone(reg), peer, links);
    }

    fn start_device(&mut self, reg: Arc<Registration>, peer: SocketAddr, links: Vec<Watched>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let now = now_ms();
        let interval_ms = self.settings.poll_interval.as_millis() as u64;
        let mut cancels = Vec::new();
        let mut tasks = Vec::new();
        for link in &links {
            let path: Arc<str> = Arc::from(link.path.as_str());
            if link.observe {
                let (tx, rx) = oneshot::channel();
                cancels.push(tx);
                let task = ObservationTask {
                    client: self.client.clone(),
                    setups: Arc::clone(&self.setups),
                    queue: self.queue_tx.clone(),
                    stats: Arc::clone(&self.stats),
                    peer,
                    dtls: dtls_of(&reg),
                    id: reg.id,
                    generation,
                    path,
                };
                tasks.push(actix::spawn(task.run(rx)));
            } else {
                self.polls.push(Reverse(Due {
                    at_ms: first_due_ms(now, interval_ms, reg.id.0, &path),
                    id: reg.id,
                    generation,
                    path,
                }));
            }
        }
        self.watched += links.len();
        // A burst of one second's worth, then `max_frames_per_s`.
        let bucket = TokenBucket::full(
            frame_rate(self.settings.max_frames_per_s),
            std::time::Instant::now(),
        );
        self.devices.insert(
            reg.id,
            Device {
                reg,
                peer,
                generation,
                links,
                cancels,
                tasks,
                bucket,
                last_poll: HashMap::new(),
                poll_errors: HashMap::new(),
            },
        );
    }

    /// Cancel a device's observations (each task deregisters) and forget its polls (their
    /// heap entries carry a stale generation and are skipped).
    fn stop_device(&mut self, id: RegistrationId) {
        self.readings.forget(id);
        if let Some(dev) = self.devices.remove(&id) {
            self.watched = self.watched.saturating_sub(dev.links.len());
            for cancel in dev.cancels {
                let _ = cancel.send(());
            }
        }
    }

    pub(super) fn current(&mut self, id: RegistrationId, generation: u64) -> Option<&mut Device> {
        self.devices
            .get_mut(&id)
            .filter(|d| d.generation == generation)
    }

    /// Bring every watch in line with the index (start the missing, rebuild the changed, stop
    /// the removed and those owned by another replica).
    fn rescan(&mut self, why: &str) {
        let now = now_ms();
        let live: HashMap<RegistrationId, Arc<Registration>> = self
            .reader
            .with_index(|idx| idx.live(now).map(|r| (r.id, Arc::clone(r))).collect());
        let gone: Vec<RegistrationId> = self
            .devices
            .keys()
            .filter(|id| !live.contains_key(id))
            .copied()
            .collect();
        info!(
            "observer: rescanning the registry: {why} ({} live, {} watches gone)",
            live.len(),
            gone.len()
        );
        for id in gone {
            self.stop_device(id);
        }
        for reg in live.values() {
            self.sync(reg, false);
        }
    }
}

impl Actor for Observer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SUBSCRIBER_MAILBOX);
        info!(
            "observer: polling every {} s, at most {} frames/s per device, {} in flight, a queue of {} values",
            self.settings.poll_interval.as_secs(),
            self.settings.max_frames_per_s,
            self.settings.max_in_flight,
            queue_capacity(self.settings.max_watched)
        );
        let now = now_ms();
        let live: Vec<Arc<Registration>> = self
            .reader
            .with_index(|idx| idx.live(now).cloned().collect());
        for reg in &live {
            self.sync(reg, false);
        }
        if let Some(rx) = self.queue_rx.take() {
            self.drain(rx, ctx);
        }
        ctx.run_interval(TICK, |act, ctx| act.release_polls(ctx));
        ctx.run_interval(STATS_EVERY, |act, _| act.log_stats());
        if self.ownership.is_some() {
            ctx.run_interval(OWNERSHIP_CHECK, |act, _| act.check_ownership());
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        let ids: Vec<RegistrationId> = self.devices.keys().copied().collect();
        for id in ids {
            self.stop_device(id);
        }
    }
}

impl Handler<RegistryEvent> for Observer {
    type Result = ();

    fn handle(&mut self, event: RegistryEvent, _: &mut Self::Context) {
        match event {
            // A (re-)registration: the device may have restarted and forgotten its observers.
            RegistryEvent::Registered(reg) => self.sync(&reg, true),
            RegistryEvent::Updated(reg) => self.sync(&reg, false),
            RegistryEvent::StatusChanged(reg) => {
                // Back at 1: whatever it had, its observations are re-established.
                self.sync(&reg, reg.status == Status::Connected)
            }
            RegistryEvent::Removed { registration, .. } => self.stop_device(registration.id),
        }
    }
}

impl Handler<RegistryFeed> for Observer {
    type Result = ();

    fn handle(&mut self, feed: RegistryFeed, ctx: &mut Self::Context) {
        match feed.item {
            FeedItem::Event(event) => <Self as Handler<RegistryEvent>>::handle(self, event, ctx),
            FeedItem::Resync { dropped } => {
                self.rescan(&format!("the registry feed dropped {dropped} events"))
            }
        }
    }
}

impl Handler<StopObserver> for Observer {
    type Result = ResponseFuture<()>;

    /// Cancels every observation (each task sends its deregistration, RFC 7641 §3.6) and
    /// resolves when they are done or after `DEREGISTER_BUDGET`: the gateway closes the CoAP
    /// endpoint only then. Polls simply stop.
    fn handle(&mut self, _: StopObserver, ctx: &mut Self::Context) -> Self::Result {
        let mut tasks = Vec::new();
        for (_, dev) in self.devices.drain() {
            for cancel in dev.cancels {
                let _ = cancel.send(());
            }
            tasks.extend(dev.tasks);
        }
        self.watched = 0;
        ctx.stop();
        let count = tasks.len();
        Box::pin(async move {
            let all = futures::future::join_all(tasks);
            if tokio::time::timeout(DEREGISTER_BUDGET, all).await.is_err() {
                log::warn!("observer: stopping before all {count} observations were deregistered");
            }
        })
    }
}

/// The ids of the devices being watched, sorted (tests).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "Vec<RegistrationId>")]
pub(super) struct WatchedDevices;

#[cfg(test)]
impl Handler<WatchedDevices> for Observer {
    type Result = MessageResult<WatchedDevices>;

    fn handle(&mut self, _: WatchedDevices, _: &mut Self::Context) -> Self::Result {
        let mut ids: Vec<RegistrationId> = self.devices.keys().copied().collect();
        ids.sort();
        MessageResult(ids)
    }
}

/// What decides which registrations a replica owns: the member list's generation and whether
/// it is on duty (the hand-over delay after joining, the local lease deadline).
fn standing(ownership: &Ownership) -> (u64, bool) {
    (ownership.generation(), ownership.on_duty())
}

/// Start the Observer on the current actix system; with `ownership` (replicas on etcd) it
/// watches only the devices this replica owns; it keeps the latest values on `readings`.
pub(crate) fn start(
    settings: ObserverSettings,
    reader: RegistryReader,
    client: CoapClient,
    platform: Recipient<DataFrames>,
    ownership: Option<Ownership>,
    readings: Readings,
) -> Addr<Observer> {
    let mut observer = Observer::new(settings, reader, client, platform);
    observer.readings = readings;
    match ownership {
        Some(ownership) => observer.with_ownership(ownership),
        None => observer,
    }
    .start()
}
