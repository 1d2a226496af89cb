//! The Observer actor (issue 8): for every live registration it watches the links chosen by
//! `observer.select` and hands each value to PlatformLink as a `data` frame.
//!
//! - A link with `obs` gets one RFC 7641 observation (§3.1), run by a task of its own through
//!   the RD's `CoapClient`; every notification goes to the actor, which forwards it. The task
//!   re-establishes the observation with back-off when it is lost: the stream ends (a final
//!   response, §3.2; a RST ends it on the client side too) or no notification arrives within
//!   Max-Age plus a margin (§3.3.1). It deregisters (§3.6, GET with Observe=1) when cancelled.
//! - Other selected links are polled with GET every `poll_interval_s`, each at a fixed phase
//!   of the interval (`schedule`), at most `max_in_flight` at once.
//! - A device's watch is rebuilt when it registers, when its address or selected links change
//!   (an update), and when it returns to status 1; it is cancelled when the device goes to
//!   status 0, is removed or expires. Every watch carries a generation, so values from an old
//!   watch are never forwarded.
//! - An error answer (4.xx, 5.xx) is not a reading: it is counted
//!   (`observer_error_answers_total{code}`), sent as a `data_error` frame (never `data`), and
//!   backs that resource off: a polled link is asked again after 2, 4, 8, ... intervals up to
//!   `observer.error_backoff_max_s` (`schedule::after_error_due_ms`), an observation ended by an
//!   error (RFC 7641 §3.2) is re-established after the set-up back-off; a value resets both.
//! - Frames per device are capped by a token bucket (`max_frames_per_s`); drops are counted
//!   and logged every [`STATS_EVERY`] with the other counters.
//! - Bounded, lossless path to the platform (issues 11 and 26): every value (notification or
//!   poll result) enters one bounded queue, [`queue_capacity`]`(max_watched)` = two values per
//!   watchable link, so a whole fleet notifying in the same instant fits twice over. The actor
//!   drains it in batches of up to [`BATCH`] per wake-up and hands each batch to PlatformLink
//!   as one [`DataFrames`] message, holding one hand-off permit per frame ([`HANDOFF`] in all)
//!   until the link has taken the batch. When the queue is full (the gateway itself is more
//!   than two values per link behind) an observation task waits for room (counted as
//!   `values waited for room`); a poll result cannot wait and is dropped and counted
//!   (`data_frames_dropped_total{reason="mailbox_full"}`). When the link has no permits left
//!   the actor stops draining, and the queue holds the values. The platform being slower than
//!   the gateway is handled in one place only: PlatformLink's owed queue drops the oldest
//!   `data` first. Registry events come through the bounded registry feed; on its `Resync`
//!   the Observer re-scans the registrations in the index.
//!
//! Started by `gateway::start` when `observer.enabled` and a platform is configured.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use log::{debug, info};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::schedule::{after_error_due_ms, first_due_ms, next_due_ms};
use super::strategy::{
    backoff, forward_poll, loss_deadline, watched_links, Reading, Selection, Watched,
};
use crate::coap::{ClientRequest, ClientResponse, CoapClient};
use crate::limits::LogThrottle;
use crate::limits::TokenBucket;
use crate::pinger::registration_target;
use crate::platform::protocol::{DataErrorFrame, DataFrame, WatchedBy};
use crate::platform::{DataFrames, OutboundFrame};
use crate::rd::resolve::gateway_may_contact;
use crate::registry::subscription::SUBSCRIBER_MAILBOX;
use crate::registry::{
    FeedItem, Registration, RegistrationId, RegistryEvent, RegistryFeed, RegistryReader, Status,
};
use crate::time::now_ms;

/// How often due polls are released.
pub const TICK: Duration = Duration::from_millis(100);
/// How often the counters are logged (when anything moved).
pub const STATS_EVERY: Duration = Duration::from_secs(10);
/// Budget of one observation set-up or deregistration.
const REQUEST_BUDGET: Duration = Duration::from_secs(10);
/// Values waiting for the Observer per watchable link (`observer.max_watched`): a fleet that
/// samples in lockstep delivers one per link at the same instant, and the queue takes two such
/// bursts before anyone waits.
pub const VALUES_PER_LINK: usize = 2;
/// The queue is never smaller than this (a small `max_watched` still absorbs a burst).
pub const MIN_QUEUE: usize = 1024;
/// Nor larger (each value holds one response; a bound on memory whatever `max_watched` says).
pub const MAX_QUEUE: usize = 1 << 22;
/// Values drained from the queue per wake-up, and the most frames in one [`DataFrames`].
pub const BATCH: usize = 1024;
/// Frames handed to PlatformLink and not yet taken by it (the hand-off permits). The link
/// takes a batch at once (into its socket writer or owed queue), so this only bounds the
/// messages in its mailbox when its thread is busy.
pub const HANDOFF: usize = 16 * BATCH;
/// Drops for a full queue are logged at most once per 10 s.
static QUEUE_FULL_LOG: LogThrottle = LogThrottle::new();
/// Waits for a full queue are logged at most once per 10 s.
static QUEUE_WAIT_LOG: LogThrottle = LogThrottle::new();

/// The Observer's queue capacity for `max_watched` links.
pub fn queue_capacity(max_watched: usize) -> usize {
    max_watched
        .saturating_mul(VALUES_PER_LINK)
        .clamp(MIN_QUEUE, MAX_QUEUE)
}
/// How long a stop waits for the deregistration GETs (a silent device must not hold it up).
const DEREGISTER_BUDGET: Duration = Duration::from_secs(2);

/// The Observer's knobs, built from `observer.*` by config validation
/// (`ObserverConfig::settings`).
#[derive(Debug, Clone)]
pub struct ObserverSettings {
    pub selection: Selection,
    pub poll_interval: Duration,
    pub only_changes: bool,
    pub max_frames_per_s: u32,
    pub max_in_flight: usize,
    pub max_watched: usize,
    /// The longest gap between polls of a link that keeps answering with errors.
    pub error_backoff_max: Duration,
}

/// Stop observing and polling (sent by the gateway before the CoAP endpoint shuts down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopObserver;

/// A value (or error answer) for the platform, from an observation task or a poll.
struct Notified {
    id: RegistrationId,
    generation: u64,
    path: Arc<str>,
    response: ClientResponse,
    /// Set when the response is an error answer: not a value, reported as `data_error`.
    error: Option<ErrorAnswer>,
    /// When the gateway got it (Unix ms): the frame's `at` ("the Observer got a value"),
    /// not the later moment the actor drained it from the queue.
    received_ms: u64,
}

/// An error answer's place in its resource's back-off.
#[derive(Debug, Clone, Copy)]
struct ErrorAnswer {
    via: WatchedBy,
    /// Error answers in a row, this one included.
    consecutive: u32,
    /// When the resource is asked again.
    retry_in: Duration,
}

/// Counters shared with the observation tasks.
#[derive(Default)]
struct Stats {
    frames: AtomicU64,
    rate_dropped: AtomicU64,
    unchanged: AtomicU64,
    lost: AtomicU64,
    setup_failed: AtomicU64,
    polls_failed: AtomicU64,
    /// Error answers (4.xx, 5.xx) to polls and observations.
    error_answers: AtomicU64,
    capped: AtomicU64,
    /// Poll results dropped because the Observer's queue was full.
    mailbox_full: AtomicU64,
    /// Notifications that found the queue full and waited for room (not lost).
    waited: AtomicU64,
}

impl Stats {
    fn dropped_for_full_queue(&self) {
        self.mailbox_full.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().record_data_mailbox_full();
        if let Some(n) = QUEUE_FULL_LOG.note() {
            log::warn!(
                "observer: {n} poll result(s) dropped in the last {} s: the observer's queue was full",
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
    }

    fn waited_for_room(&self) {
        self.waited.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = QUEUE_WAIT_LOG.note() {
            log::warn!(
                "observer: {n} notification(s) waited for room in the last {} s: the observer's queue was full (the gateway is behind its devices)",
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
    }

    fn snapshot(&self) -> [u64; 10] {
        [
            &self.frames,
            &self.rate_dropped,
            &self.unchanged,
            &self.lost,
            &self.setup_failed,
            &self.polls_failed,
            &self.capped,
            &self.mailbox_full,
            &self.error_answers,
            &self.waited,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// One device being watched.
struct Device {
    reg: Arc<Registration>,
    peer: SocketAddr,
    generation: u64,
    links: Vec<Watched>,
    /// Dropping a sender (or sending on it) cancels that observation.
    cancels: Vec<oneshot::Sender<()>>,
    /// The observation tasks; awaited on `StopObserver` so that their deregistrations leave
    /// before the endpoint closes.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    bucket: TokenBucket,
    last_poll: HashMap<Arc<str>, Reading>,
    /// Polled links whose last answers were errors: how many in a row.
    poll_errors: HashMap<Arc<str>, u32>,
}

/// A polled link's next turn.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at_ms: u64,
    id: RegistrationId,
    generation: u64,
    path: Arc<str>,
}

pub struct Observer {
    settings: ObserverSettings,
    reader: RegistryReader,
    client: CoapClient,
    platform: Recipient<DataFrames>,
    /// The bounded queue of values: observation tasks and polls send, the actor drains.
    queue_tx: mpsc::Sender<Notified>,
    /// Taken by the drain loop when the actor starts.
    queue_rx: Option<mpsc::Receiver<Notified>>,
    /// Hand-off permits: frames given to the link and not yet taken by it.
    handoff: Arc<Semaphore>,
    devices: HashMap<RegistrationId, Device>,
    polls: BinaryHeap<Reverse<Due>>,
    polls_in_flight: usize,
    setups: Arc<Semaphore>,
    watched: usize,
    next_generation: u64,
    stats: Arc<Stats>,
    last_logged: [u64; 10],
}

impl Observer {
    pub fn new(
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
        }
    }

    /// Bring one device's watch in line with its registration.
    fn sync(&mut self, reg: &Arc<Registration>, force: bool) {
        if reg.status == Status::Disconnected {
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
        // Issue 25 item 7: a base stored by an older version may name the gateway's own host
        // for a registrant elsewhere; its data must not stream to the platform.
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
        if let Some(dev) = self.devices.remove(&id) {
            self.watched = self.watched.saturating_sub(dev.links.len());
            for cancel in dev.cancels {
                let _ = cancel.send(());
            }
        }
    }

    fn current(&mut self, id: RegistrationId, generation: u64) -> Option<&mut Device> {
        self.devices
            .get_mut(&id)
            .filter(|d| d.generation == generation)
    }

    /// The frame for one value (`data`) or error answer (`data_error`), within the device's
    /// rate; `None` for a stale watch or a value over the rate (counted).
    fn frame_for(&mut self, n: Notified) -> Option<OutboundFrame> {
        let Notified {
            id,
            generation,
            path,
            response: resp,
            error,
            received_ms: now,
        } = n;
        let path: &str = &path;
        let max_frames_per_s = self.settings.max_frames_per_s;
        let stats = Arc::clone(&self.stats);
        let dev = self.current(id, generation)?;
        let rate = frame_rate(max_frames_per_s);
        if !dev.bucket.try_take(rate, rate, std::time::Instant::now()) {
            stats.rate_dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::global().record_data_rate_limited();
            return None;
        }
        let ep = dev.reg.ep.to_string();
        let d = dev.reg.d.as_ref().map(ToString::to_string);
        let frame = match error {
            None => OutboundFrame::Data(DataFrame::new(
                ep,
                d,
                path,
                resp.code.to_string(),
                resp.content_format,
                &resp.payload,
                now,
            )),
            Some(e) => OutboundFrame::DataError(DataErrorFrame {
                ep,
                d,
                path: path.to_owned(),
                code: resp.code.to_string(),
                content_format: resp.content_format,
                payload: crate::platform::protocol::encode_payload(&resp.payload),
                at: crate::time::rfc3339_ms(now),
                via: e.via,
                consecutive: e.consecutive,
                retry_in_ms: u64::try_from(e.retry_in.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        Some(frame)
    }

    /// Drain the queue: up to [`BATCH`] values per wake-up, then room for them at the link
    /// (hand-off permits), then the batch to the link, and again. Runs for the actor's life.
    fn drain(&mut self, mut rx: mpsc::Receiver<Notified>, ctx: &mut Context<Self>) {
        let handoff = Arc::clone(&self.handoff);
        ctx.spawn(
            async move {
                let mut batch = Vec::with_capacity(BATCH);
                rx.recv_many(&mut batch, BATCH).await;
                // A batch is at most BATCH ≤ HANDOFF, so the wait ends once the link catches up;
                // meanwhile the queue holds (and, full, makes the tasks wait).
                let n = u32::try_from(batch.len()).unwrap_or(u32::MAX);
                let room = handoff.acquire_many_owned(n).await.ok();
                (rx, batch, room)
            }
            .into_actor(self)
            .map(|(rx, batch, room), act, ctx| {
                // Empty only when every sender is gone; the actor holds one, so it is stopping.
                if batch.is_empty() {
                    return;
                }
                act.forward_batch(batch, room);
                act.drain(rx, ctx);
            }),
        );
    }

    /// Turn a drained batch into frames and hand them to the link in one message.
    fn forward_batch(&mut self, batch: Vec<Notified>, room: Option<OwnedSemaphorePermit>) {
        let frames: Vec<OutboundFrame> = batch
            .into_iter()
            .filter_map(|n| self.frame_for(n))
            .collect();
        if frames.is_empty() {
            return;
        }
        let count = frames.len() as u64;
        // do_send: bounded by `room`, not by the link's mailbox (which would refuse a burst).
        self.platform.do_send(DataFrames { frames, room });
        self.stats.frames.fetch_add(count, Ordering::Relaxed);
        crate::metrics::global().record_data_forwarded_n(count);
    }

    /// A poll's value or error answer into the queue; it cannot wait, so a full queue drops it
    /// (counted).
    fn enqueue(&self, n: Notified) {
        match self.queue_tx.try_send(n) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.stats.dropped_for_full_queue(),
            // Only while the actor stops.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// The registry feed dropped events for us: bring every watch in line with the index
    /// (start the missing, rebuild the changed, stop the removed).
    fn resync(&mut self, dropped: u64) {
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
            "observer: resyncing from the registry after {dropped} dropped events ({} live, {} watches gone)",
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

    fn release_polls(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        while self.polls_in_flight < self.settings.max_in_flight {
            match self.polls.peek() {
                Some(Reverse(due)) if due.at_ms <= now => {}
                _ => break,
            }
            let Some(Reverse(due)) = self.polls.pop() else {
                break;
            };
            let Some(dev) = self.current(due.id, due.generation) else {
                continue;
            };
            let peer = dev.peer;
            self.polls_in_flight += 1;
            let client = self.client.clone();
            let budget = self.settings.poll_interval.min(REQUEST_BUDGET);
            let req = ClientRequest::get(&due.path).timeout(budget);
            ctx.spawn(
                async move { client.request(peer, req).await }
                    .into_actor(self)
                    .map(move |result, act, _| act.finish_poll(due, result)),
            );
        }
    }

    fn finish_poll(&mut self, due: Due, result: Result<ClientResponse, crate::coap::ClientError>) {
        self.polls_in_flight -= 1;
        let interval_ms = self.settings.poll_interval.as_millis() as u64;
        let cap_ms = self.settings.error_backoff_max.as_millis() as u64;
        let only_changes = self.settings.only_changes;
        let stats = Arc::clone(&self.stats);
        let Some(dev) = self.current(due.id, due.generation) else {
            return;
        };
        let now = now_ms();
        let mut next_at = next_due_ms(due.at_ms, interval_ms, now);
        // `Some(error)`: forward the response, as `data_error` when `error` is set.
        let forward = match &result {
            Ok(resp) if !resp.code.is_success() => {
                // Not a reading: count it, back off, report it as an error.
                let errors = dev.poll_errors.entry(Arc::clone(&due.path)).or_insert(0);
                *errors = errors.saturating_add(1);
                let consecutive = *errors;
                // After an error, the next value is news even if it equals the last one.
                dev.last_poll.remove(&due.path);
                stats.error_answers.fetch_add(1, Ordering::Relaxed);
                crate::metrics::global().record_observer_error(resp.code);
                next_at = after_error_due_ms(due.at_ms, interval_ms, consecutive, cap_ms, now);
                Some(Some(ErrorAnswer {
                    via: WatchedBy::Poll,
                    consecutive,
                    retry_in: Duration::from_millis(next_at.saturating_sub(now)),
                }))
            }
            Ok(resp) => {
                dev.poll_errors.remove(&due.path);
                let reading = Reading {
                    code: resp.code.to_string(),
                    content_format: resp.content_format,
                    payload: resp.payload.clone(),
                };
                let fwd = forward_poll(only_changes, dev.last_poll.get(&due.path), &reading);
                if !fwd {
                    stats.unchanged.fetch_add(1, Ordering::Relaxed);
                }
                dev.last_poll.insert(Arc::clone(&due.path), reading);
                fwd.then_some(None)
            }
            Err(e) => {
                stats.polls_failed.fetch_add(1, Ordering::Relaxed);
                debug!("observer: GET {} from {}: {e}", due.path, dev.reg.ep);
                None
            }
        };
        if let (Some(error), Ok(response)) = (forward, result) {
            self.enqueue(Notified {
                id: due.id,
                generation: due.generation,
                path: Arc::clone(&due.path),
                response,
                error,
                received_ms: now,
            });
        }
        self.requeue(due, next_at);
    }

    fn requeue(&mut self, due: Due, at_ms: u64) {
        self.polls.push(Reverse(Due { at_ms, ..due }));
    }

    fn log_stats(&mut self) {
        let now = self.stats.snapshot();
        if now == self.last_logged {
            return;
        }
        let d: Vec<u64> = now
            .iter()
            .zip(self.last_logged.iter())
            .map(|(a, b)| a - b)
            .collect();
        info!(
            "observer: {} devices, {} links watched; last {} s: {} frames, {} dropped by the \
             rate limit, {} unchanged polls not sent, {} observations lost, {} set-ups failed, \
             {} polls failed, {} devices over max_watched, {} values dropped for a full queue, \
             {} error answers, {} values waited for room",
            self.devices.len(),
            self.watched,
            STATS_EVERY.as_secs(),
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            d[5],
            d[6],
            d[7],
            d[8],
            d[9]
        );
        self.last_logged = now;
    }
}

/// One observation's life: establish, forward, re-establish with back-off, deregister.
struct ObservationTask {
    client: CoapClient,
    setups: Arc<Semaphore>,
    queue: mpsc::Sender<Notified>,
    stats: Arc<Stats>,
    peer: SocketAddr,
    id: RegistrationId,
    generation: u64,
    path: Arc<str>,
}

impl ObservationTask {
    /// Hand a value to the Observer's queue; when it is full, wait for room (the CoAP layer
    /// holds this observation's next notifications meanwhile). False when the Observer is
    /// gone.
    async fn notify(&self, response: ClientResponse, error: Option<ErrorAnswer>) -> bool {
        let n = Notified {
            id: self.id,
            generation: self.generation,
            path: Arc::clone(&self.path),
            response,
            error,
            received_ms: now_ms(),
        };
        match self.queue.try_send(n) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(n)) => {
                self.stats.waited_for_room();
                self.queue.send(n).await.is_ok()
            }
        }
    }

    /// [`Self::notify`] unless cancelled meanwhile: false when the task should end.
    async fn deliver(
        &self,
        cancel: &mut oneshot::Receiver<()>,
        response: ClientResponse,
        error: Option<ErrorAnswer>,
    ) -> bool {
        tokio::select! {
            biased;
            _ = cancel => false,
            delivered = self.notify(response, error) => delivered,
        }
    }

    /// Count an error answer and place it in the back-off (`failures` set-up attempts failed
    /// in a row, this one included).
    fn error_answer(&self, response: &ClientResponse, failures: u32) -> ErrorAnswer {
        self.stats.error_answers.fetch_add(1, Ordering::Relaxed);
        crate::metrics::global().record_observer_error(response.code);
        ErrorAnswer {
            via: WatchedBy::Observe,
            consecutive: failures,
            retry_in: backoff(failures.saturating_sub(1)),
        }
    }

    async fn run(self, mut cancel: oneshot::Receiver<()>) {
        let mut failures = 0u32;
        loop {
            let setup = async {
                // Bounded set-ups: a registry load of 10k devices must not flood the socket.
                let _permit = self.setups.acquire().await.ok()?;
                let req = ClientRequest::get(&self.path).timeout(REQUEST_BUDGET);
                Some(self.client.observe(self.peer, req).await)
            };
            let attempt = tokio::select! {
                biased;
                _ = &mut cancel => return,
                attempt = setup => attempt,
            };
            match attempt {
                None => return, // the semaphore is never closed; nothing to do without it
                Some(Ok(mut obs)) => {
                    let observing = obs.first.code.is_success() && obs.first.observe.is_some();
                    let mut quiet = loss_deadline(obs.first.max_age);
                    let error = if obs.first.code.is_success() {
                        None
                    } else {
                        failures += 1;
                        Some(self.error_answer(&obs.first, failures))
                    };
                    if !self.deliver(&mut cancel, obs.first.clone(), error).await {
                        obs.cancel().await;
                        return;
                    }
                    if observing {
                        failures = 0;
                        let mut ended_by_error = false;
                        loop {
                            tokio::select! {
                                biased;
                                _ = &mut cancel => {
                                    obs.cancel().await;
                                    return;
                                }
                                next = tokio::time::timeout(quiet, obs.next()) => match next {
                                    Ok(Some(resp)) if !resp.code.is_success() => {
                                        // RFC 7641 §3.2: an error notification ends the
                                        // observation; ask again only after the back-off.
                                        failures = 1;
                                        ended_by_error = true;
                                        let error = self.error_answer(&resp, failures);
                                        if !self.deliver(&mut cancel, resp, Some(error)).await {
                                            return;
                                        }
                                        break;
                                    }
                                    Ok(Some(resp)) => {
                                        quiet = loss_deadline(resp.max_age);
                                        if !self.deliver(&mut cancel, resp, None).await {
                                            obs.cancel().await;
                                            return;
                                        }
                                    }
                                    // Ended by the device (final response or RST) or lost.
                                    Ok(None) | Err(_) => break,
                                },
                            }
                        }
                        if !ended_by_error {
                            self.stats.lost.fetch_add(1, Ordering::Relaxed);
                            debug!(
                                "observer: observation of {} at {} lost",
                                self.path, self.peer
                            );
                        }
                    } else if obs.first.code.is_success() {
                        // A value without Observe: the device does not offer observation now.
                        failures += 1;
                    }
                }
                Some(Err(e)) => {
                    failures += 1;
                    self.stats.setup_failed.fetch_add(1, Ordering::Relaxed);
                    debug!(
                        "observer: cannot observe {} at {}: {e}",
                        self.path, self.peer
                    );
                }
            }
            let wait = if failures == 0 {
                Duration::ZERO
            } else {
                backoff(failures - 1)
            };
            tokio::select! {
                biased;
                _ = &mut cancel => return,
                _ = tokio::time::sleep(wait) => {}
            }
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
            FeedItem::Resync { dropped } => self.resync(dropped),
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
struct WatchedDevices;

#[cfg(test)]
impl Handler<WatchedDevices> for Observer {
    type Result = MessageResult<WatchedDevices>;

    fn handle(&mut self, _: WatchedDevices, _: &mut Self::Context) -> Self::Result {
        let mut ids: Vec<RegistrationId> = self.devices.keys().copied().collect();
        ids.sort();
        MessageResult(ids)
    }
}

/// Start the Observer on the current actix system.
pub fn start(
    settings: ObserverSettings,
    reader: RegistryReader,
    client: CoapClient,
    platform: Recipient<DataFrames>,
) -> Addr<Observer> {
    Observer::new(settings, reader, client, platform).start()
}

/// The per-device frame budget as a token-bucket rate (at least one frame per second).
fn frame_rate(max_frames_per_s: u32) -> f64 {
    f64::from(max_frames_per_s.max(1))
}

#[cfg(test)]
mod tests {
    //! A flood of notifications against a link that cannot take them: the Observer's queue and
    //! hand-off stay at their bounds, the senders wait, and every value arrives once the link
    //! drains; and the resync of the watches.
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::coap::{
        Code, Endpoint, HandlerFuture, InboundRequest, OutboundResponse, RequestHandler,
        TransmissionParams,
    };
    use crate::registry::{BaseOrigin, EndpointName, RegistryConfig};
    use link_format::Link;

    const LINK_CAPACITY: usize = 64;

    struct NoDevice;

    impl RequestHandler for NoDevice {
        fn handle(&self, _: InboundRequest) -> HandlerFuture {
            Box::pin(async { OutboundResponse::new(Code::NOT_FOUND) })
        }
    }

    /// Stands in for PlatformLink: a small mailbox; its thread can be stalled.
    struct LinkSink {
        frames: Arc<AtomicUsize>,
    }

    impl Actor for LinkSink {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.set_mailbox_capacity(LINK_CAPACITY);
        }
    }

    impl Handler<DataFrames> for LinkSink {
        type Result = ();
        fn handle(&mut self, batch: DataFrames, _: &mut Context<Self>) {
            self.frames.fetch_add(batch.frames.len(), Ordering::SeqCst);
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Block(std_mpsc::Sender<()>, std_mpsc::Receiver<()>);

    impl Handler<Block> for LinkSink {
        type Result = ();
        fn handle(&mut self, Block(entered, release): Block, _: &mut Context<Self>) {
            let _ = entered.send(());
            let _ = release.recv_timeout(Duration::from_secs(30));
        }
    }

    fn registration(peer: SocketAddr) -> Arc<Registration> {
        Arc::new(Registration {
            id: RegistrationId(7),
            ep: EndpointName::new("sensor").unwrap(),
            d: None,
            base: format!("coap://{peer}").into(),
            base_origin: BaseOrigin::Explicit,
            lifetime_s: 3_600,
            attrs: Vec::new(),
            links: vec![Link::new("/t").with("obs", None)].into(),
            status: Status::Connected,
            registered_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: u64::MAX,
            source: peer,
        })
    }

    fn response(i: usize) -> ClientResponse {
        ClientResponse {
            code: Code::CONTENT,
            content_format: Some(0),
            payload: i.to_string().into_bytes(),
            observe: Some(i as u32),
            max_age: None,
            etag: None,
            location_path: Vec::new(),
            location_query: Vec::new(),
            rtt: Duration::ZERO,
        }
    }

    /// A CoAP endpoint for the Observer's client and an empty registry in a temporary directory.
    async fn endpoint_and_registry() -> (
        Endpoint,
        Addr<crate::registry::Registry>,
        RegistryReader,
        tempfile::TempDir,
    ) {
        let endpoint = Endpoint::bind(
            &["127.0.0.1:0".parse().unwrap()],
            TransmissionParams::default(),
            Arc::new(NoDevice),
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (registry, reader) =
            crate::registry::start(RegistryConfig::in_dir(dir.path().join("db"))).unwrap();
        (endpoint, registry, reader, dir)
    }

    #[actix_rt::test]
    async fn a_flood_larger_than_every_bound_waits_and_reaches_a_stalled_link_whole() {
        let (endpoint, _registry, reader, _dir) = endpoint_and_registry().await;
        let frames = Arc::new(AtomicUsize::new(0));
        let arbiter = Arbiter::new();
        let sink = {
            let frames = frames.clone();
            LinkSink::start_in_arbiter(&arbiter.handle(), move |_| LinkSink { frames })
        };
        let (entered_tx, entered) = std_mpsc::channel();
        let (release, release_rx) = std_mpsc::channel();
        sink.do_send(Block(entered_tx, release_rx));
        entered.recv_timeout(Duration::from_secs(10)).unwrap();

        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // A small fleet: the queue is its minimum, far below the flood.
        let settings = ObserverSettings {
            selection: Selection::parse(&["*"]).unwrap(),
            poll_interval: Duration::from_secs(3_600),
            only_changes: false,
            max_frames_per_s: 1_000_000,
            max_in_flight: 1,
            max_watched: 10,
            error_backoff_max: Duration::from_secs(600),
        };
        assert_eq!(queue_capacity(settings.max_watched), MIN_QUEUE);
        let mut handles = None;
        let client = endpoint.client();
        let observer = Observer::create(|_| {
            let mut observer = Observer::new(settings, reader, client, sink.clone().recipient());
            observer.devices.insert(
                RegistrationId(7),
                Device {
                    reg: registration(peer),
                    peer,
                    generation: 1,
                    links: Vec::new(),
                    cancels: Vec::new(),
                    tasks: Vec::new(),
                    bucket: TokenBucket::full(1_000_000.0, std::time::Instant::now()),
                    last_poll: HashMap::new(),
                    poll_errors: HashMap::new(),
                },
            );
            handles = Some((Arc::clone(&observer.stats), observer.queue_tx.clone()));
            observer
        });
        let (stats, queue) = handles.unwrap();
        assert_eq!(
            observer.send(WatchedDevices).await.unwrap(),
            vec![RegistrationId(7)]
        );

        // More values than the link's hand-off permits and the queue together, from 50
        // observations, while the link cannot take any.
        let flood = HANDOFF + 2 * MIN_QUEUE;
        let task = |path: &str| ObservationTask {
            client: endpoint.client(),
            setups: Arc::new(Semaphore::new(1)),
            queue: queue.clone(),
            stats: Arc::clone(&stats),
            peer,
            id: RegistrationId(7),
            generation: 1,
            path: Arc::from(path),
        };
        let tasks: Vec<ObservationTask> = (0..50).map(|i| task(&format!("/t{i}"))).collect();
        let sender = actix_rt::spawn(async move {
            for i in 0..flood {
                assert!(tasks[i % tasks.len()].notify(response(i), None).await);
            }
        });
        // The Observer drains until the link's permits run out; then the queue fills and the
        // senders wait (counted), nothing is dropped.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stats.waited.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no sender ever waited"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.mailbox_full.load(Ordering::SeqCst), 0);
        assert!(stats.frames.load(Ordering::SeqCst) <= HANDOFF as u64);

        release.send(()).unwrap();
        sender.await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while frames.load(Ordering::SeqCst) < flood {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {flood} frames reached the link",
                frames.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(frames.load(Ordering::SeqCst), flood);
        assert_eq!(stats.frames.load(Ordering::SeqCst), flood as u64);
        assert_eq!(stats.mailbox_full.load(Ordering::SeqCst), 0);
        assert_eq!(stats.rate_dropped.load(Ordering::SeqCst), 0);
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn a_resync_brings_the_watches_in_line_with_the_registry() {
        use crate::registry::{FeedItem, Register, RegistryFeed, Remove};

        let (endpoint, registry, reader, _dir) = endpoint_and_registry().await;
        let frames = Arc::new(AtomicUsize::new(0));
        let sink = LinkSink { frames }.start();
        let settings = ObserverSettings {
            selection: Selection::parse(&["rt=temp"]).unwrap(),
            poll_interval: Duration::from_secs(3_600),
            only_changes: false,
            max_frames_per_s: 10,
            max_in_flight: 1,
            max_watched: 100,
            error_backoff_max: Duration::from_secs(600),
        };
        // Not subscribed: it learns about the registrations below only through the resync.
        let observer = start(settings, reader, endpoint.client(), sink.recipient());
        assert!(observer.send(WatchedDevices).await.unwrap().is_empty());
        let mut ids = Vec::new();
        for i in 0..3u16 {
            let registered = registry
                .send(Register {
                    ep: EndpointName::new(format!("dev{i}")).unwrap(),
                    d: None,
                    base: Some(format!("coap://127.0.0.1:{}", 9_000 + i)),
                    lifetime_s: 3_600,
                    attrs: Vec::new(),
                    links: vec![Link::new("/t").with("rt", Some("temp"))],
                    source: SocketAddr::from(([127, 0, 0, 1], 9_000 + i)),
                })
                .await
                .unwrap()
                .unwrap();
            ids.push(registered.registration.id);
        }
        ids.sort();
        observer.do_send(RegistryFeed::unbounded(FeedItem::Resync { dropped: 3 }));
        assert_eq!(observer.send(WatchedDevices).await.unwrap(), ids);

        registry
            .send(Remove::by_gateway(ids[1]))
            .await
            .unwrap()
            .unwrap();
        observer.do_send(RegistryFeed::unbounded(FeedItem::Resync { dropped: 1 }));
        assert_eq!(
            observer.send(WatchedDevices).await.unwrap(),
            vec![ids[0], ids[2]],
            "a removed registration's watch is stopped"
        );
    }

    #[test]
    fn the_shipped_config_states_the_stats_period() {
        // config.yaml is what operators read; it must name the period the counters are logged.
        let yaml = include_str!("../../config.yaml");
        let said = format!("logged every {} s", STATS_EVERY.as_secs());
        assert!(yaml.contains(&said), "config.yaml should say {said:?}");
        assert!(!yaml.contains("logged every minute"));
    }
}
