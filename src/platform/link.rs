//! The PlatformLink actor: the gateway's one WebSocket to the platform
//! (`docs/platform-protocol.md`, protocol v1).
//!
//! It dials `platform.url` with awc (`ws://`, or `wss://` over rustls), sending
//! `Authorization: Bearer <token>` when a token is configured. After every connect it sends
//! `hello`, the registry `snapshot` (parts of at most 1,000 devices and `platform.max_frame_bytes`
//! bytes, from a [`SnapshotSource`], cut by `platform::fit`), a Ping, then every frame owed from
//! the outage, in order, then live frames. No frame written is larger than the frame bound.
//! While the link is down,
//! or while the socket writer already holds [`WRITER_HIGH_WATER`] unwritten frames (a platform
//! slower than the gateway), frames go to the bounded [`OwedQueue`], so memory stays bounded
//! and `data` is what gets dropped first. Reconnects follow [`Backoff`], which is reset only when
//! the Pong to the Ping behind the snapshot arrives: a platform that refuses a snapshot frame
//! and closes (at every connect, every 0.5 s, forever) is re-dialled ever more
//! slowly, with one error line per 10 s naming the cause. A close with 1009 "message too big"
//! also halves the frame bound below the largest frame sent (floor [`MIN_FRAME_BYTES`]), so a
//! platform whose limit is lower than `platform.max_frame_bytes` still gets everything after a
//! few reconnects. A WebSocket ping goes
//! out every `ping_interval`; a link that has heard nothing (no pong, no frame) for
//! `pong_timeout` is closed and re-dialled.
//!
//! Who calls it: the Registry publishes [`RegistryEvent`]s to it through the bounded registry
//! feed (`SubscribeFeed(addr.recipient())`); the Executer sends [`SendFrame`]s with `try_send`
//! (mailbox [`SUBSCRIBER_MAILBOX`]); the Observer sends batches of `data` frames
//! ([`DataFrames`]) with `do_send`, bounded by its own hand-off permits, so a burst of a whole
//! fleet's values is never refused here; `command` frames go to the [`PlatformCommand`]
//! recipient.
//! - A registry feed `Resync` (this link fell more than `EVENT_BACKLOG` events behind and some
//!   were dropped): the protocol sends a `snapshot` only right after `hello` on a (re)connect,
//!   so the link closes the connection (frames already handed to the writer go out first) and
//!   re-dials at once; the new `snapshot` holds every registration. While down or dialling,
//!   nothing is needed: the coming connect reads the snapshot after the resync anyway.
//!
//! Choices where the contract is silent:
//! - No command recipient (no Executer configured, or it stopped): every command is answered at
//!   once with a `command_result` error of kind `bad_command` and a message saying the gateway
//!   executes no commands. The contract promises exactly one `command_result` per command, so an
//!   `error` frame would leave the platform waiting; `bad_command` is the one kind that tells the
//!   platform not to retry the same command here (`overloaded` would invite retries that can
//!   never succeed, `unknown_device` would be a lie about the device).
//! - Delivery is at most once per connection: frames handed to a socket that dies before the
//!   platform reads them are lost (protocol v1 has no acknowledgements). The snapshot after the
//!   reconnect repairs the registry view; only data and results in flight can be lost this way.
//! - Frames owed from the outage may already be reflected in the snapshot that precedes them
//!   (the snapshot is taken at connect time); platforms apply events idempotently.
//! - The token is sent in one header and never logged; the URL is logged without its query or
//!   user-info, in case someone put a credential there.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::Item;
use awc::error::SendRequestError;
use awc::error::WsClientError;
use awc::ws::{Frame, Message as WsMessage};
use futures::channel::mpsc;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::backoff::{Backoff, INITIAL_DELAY};
use super::error::LinkError;
use super::fit::{frame_within, snapshot_parts, MIN_FRAME_BYTES};
use super::messages::{
    DataFrames, GetLinkStats, LinkStats, PlatformCommand, SendFrame, SetCommandRecipient, StopLink,
};
use super::protocol::{
    hello, parse_inbound, CommandErrorKind, CommandResult, InboundFrame, OutboundFrame,
    ProtocolError,
};
use super::queue::{OwedQueue, PushOutcome};
use crate::config::{PlatformConfig, Secret};
use crate::limits::LogThrottle;
use crate::registry::subscription::SUBSCRIBER_MAILBOX;
use crate::registry::{FeedItem, Registration, RegistryEvent, RegistryFeed};
use crate::time::now_ms;

/// How often the link pings the platform.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(15);
/// Silence (no pong, no frame) after which the link is declared dead: two missed pings.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(40);
/// Budget for TCP + TLS + the upgrade exchange.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames handed to the socket writer and not yet taken by it. Past this the platform (or the
/// network) is slower than the gateway: further frames wait in the bounded owed queue, where
/// `data` is dropped first, instead of piling up without bound in the writer.
pub const WRITER_HIGH_WATER: usize = 4_096;
/// How long a graceful stop waits for the platform to answer our Close frame (RFC 6455 §7.1.1:
/// the server closes the TCP connection first).
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How often frames waiting behind a busy writer are moved on.
const PUMP_INTERVAL: Duration = Duration::from_millis(10);
/// Resyncs are logged at most once per 10 s.
static RESYNC_LOG: LogThrottle = LogThrottle::new();
/// Connections lost before the platform accepted the snapshot: at most one line per 10 s.
static UNACCEPTED_LOG: LogThrottle = LogThrottle::new();
/// Frames that could not be fitted into the frame bound, and devices sent truncated.
static OVERSIZE_LOG: LogThrottle = LogThrottle::new();
/// The Ping sent right behind the snapshot: its Pong proves the platform read every part.
const SNAPSHOT_PROBE: &[u8] = b"snapshot";
/// Largest frame accepted from the platform. Commands are small; this only bounds memory.
const MAX_INBOUND_FRAME: usize = 1 << 20;

/// The registry as it is now, for the snapshot after each connect. The lead implements it for
/// `RegistryReader` (live registrations in id order).
pub trait SnapshotSource: Send + Sync + 'static {
    fn snapshot(&self) -> Vec<Arc<Registration>>;
}

/// Everything the link needs to run. `new` fills the tunables that `config.yaml` does not
/// expose with their defaults; tests shorten them.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub url: String,
    pub token: Secret,
    /// Sent as `hello.gateway`.
    pub gateway_id: String,
    pub queue_capacity: usize,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub connect_timeout: Duration,
    /// `platform.max_frame_bytes`: no frame written is larger.
    pub max_frame_bytes: usize,
    /// Certificates trusted for `wss://` besides the public web roots (a platform with a
    /// private CA, or a test's self-signed certificate). DER-encoded.
    pub extra_root_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl LinkSettings {
    pub fn new(config: &PlatformConfig, gateway_id: impl Into<String>) -> Self {
        LinkSettings {
            url: config.url.clone(),
            token: config.token.clone(),
            gateway_id: gateway_id.into(),
            queue_capacity: config.queue_capacity,
            reconnect_initial: INITIAL_DELAY,
            reconnect_max: Duration::from_secs(config.reconnect_max_s),
            ping_interval: DEFAULT_PING_INTERVAL,
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_frame_bytes: config.max_frame_bytes,
            extra_root_certs: config.ca_certs.clone(),
        }
    }
}

/// `url` without user-info or query, for logs.
fn loggable_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    }
}

fn classify(error: WsClientError) -> LinkError {
    match error {
        WsClientError::InvalidResponseStatus(status)
            if status.as_u16() == 401 || status.as_u16() == 403 =>
        {
            LinkError::Unauthorized {
                status: status.as_u16(),
            }
        }
        WsClientError::InvalidResponseStatus(status) => LinkError::UpgradeRefused {
            status: status.as_u16(),
        },
        WsClientError::SendRequest(SendRequestError::Url(e)) => {
            LinkError::InvalidUrl(e.to_string())
        }
        WsClientError::SendRequest(SendRequestError::Http(e)) => {
            LinkError::InvalidUrl(e.to_string())
        }
        other => LinkError::Transport(other.to_string()),
    }
}

/// What the socket reader hands the actor, tagged with the connection it came from so that a
/// late item from a replaced connection is ignored.
enum Inbound {
    Frame(u64, Result<Frame, awc::error::WsProtocolError>),
    Closed(u64),
}

/// One open WebSocket.
struct Connection {
    generation: u64,
    /// Feeds the writer task; dropping it closes the socket after the queued writes.
    tx: mpsc::UnboundedSender<WsMessage>,
    /// Messages in `tx` the writer has not taken yet (shared with the writer, same thread).
    in_flight: Rc<Cell<usize>>,
    reader: SpawnHandle,
    last_heard: Instant,
    /// The platform answered the Ping sent behind the snapshot: it read every part. Only then
    /// is the back-off reset, so a platform that refuses a snapshot frame (and closes) is
    /// re-dialled ever more slowly instead of every 0.5 s.
    snapshot_accepted: bool,
    /// The largest frame written on this connection, in bytes (for the refusal's log line).
    largest_frame: usize,
}

impl Connection {
    /// Hand a message to the writer, counting it until the writer takes it. False when the
    /// writer is gone.
    fn send(&self, message: WsMessage) -> bool {
        if self.tx.unbounded_send(message).is_err() {
            return false;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        true
    }
}

enum LinkState {
    /// Waiting for the back-off timer (or not started).
    Down,
    /// A dial is in progress.
    Dialling,
    Up(Connection),
}

pub struct PlatformLink {
    settings: LinkSettings,
    snapshot: Arc<dyn SnapshotSource>,
    commands: Option<Recipient<PlatformCommand>>,
    client: Option<awc::Client>,
    state: LinkState,
    generation: u64,
    queue: OwedQueue<OutboundFrame>,
    backoff: Backoff,
    rng: StdRng,
    stats: LinkStats,
    /// The largest frame written: `platform.max_frame_bytes`, lowered when the platform closes
    /// with 1009 "message too big" (its limit is below the configured one).
    frame_bound: usize,
    /// A `StopLink` sent our Close frame: nothing more is written, no re-dial, stop when the
    /// platform answers (or after `CLOSE_GRACE`).
    closing: bool,
}

impl PlatformLink {
    /// Start the link on the current arbiter; it dials at once. `commands` may be set later
    /// with [`SetCommandRecipient`].
    pub fn start(
        settings: LinkSettings,
        snapshot: Arc<dyn SnapshotSource>,
        commands: Option<Recipient<PlatformCommand>>,
    ) -> Addr<PlatformLink> {
        Actor::start(PlatformLink::new(settings, snapshot, commands))
    }

    /// Start the link on another arbiter (thread). Recommended in the gateway: rendering a
    /// 100,000-device snapshot takes a few hundred milliseconds after every connect, which
    /// should not stall the actors serving CoAP.
    pub fn start_on(
        arbiter: &actix::ArbiterHandle,
        settings: LinkSettings,
        snapshot: Arc<dyn SnapshotSource>,
        commands: Option<Recipient<PlatformCommand>>,
    ) -> Addr<PlatformLink> {
        PlatformLink::start_in_arbiter(arbiter, move |_| {
            PlatformLink::new(settings, snapshot, commands)
        })
    }

    fn new(
        settings: LinkSettings,
        snapshot: Arc<dyn SnapshotSource>,
        commands: Option<Recipient<PlatformCommand>>,
    ) -> PlatformLink {
        let queue = OwedQueue::new(settings.queue_capacity);
        let backoff = Backoff::new(settings.reconnect_initial, settings.reconnect_max);
        let frame_bound = settings.max_frame_bytes.max(MIN_FRAME_BYTES);
        let stats = LinkStats {
            frame_bound,
            ..LinkStats::default()
        };
        PlatformLink {
            settings,
            snapshot,
            commands,
            client: None,
            state: LinkState::Down,
            generation: 0,
            queue,
            backoff,
            rng: StdRng::from_entropy(),
            stats,
            frame_bound,
            closing: false,
        }
    }

    /// TLS for `wss://`: the public web roots plus `extra_root_certs`, ALPN `http/1.1` only
    /// (WebSocket upgrades are HTTP/1.1; offering h2 could break them).
    fn tls_config(&self) -> rustls::ClientConfig {
        let mut roots = actix_tls::connect::rustls_0_23::webpki_roots_cert_store();
        for cert in &self.settings.extra_root_certs {
            if let Err(e) = roots.add(cert.clone()) {
                log::error!("platform link: an extra root certificate is unusable: {e}");
            }
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    fn build_client(&self) -> awc::Client {
        // Without a process-wide provider rustls cannot build a TLS config; installing fails
        // harmlessly when some other part of the process installed one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connector = awc::Connector::new()
            .rustls_0_23(Arc::new(self.tls_config()))
            .timeout(self.settings.connect_timeout);
        awc::Client::builder()
            .connector(connector)
            .timeout(self.settings.connect_timeout)
            .finish()
    }

    fn dial(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        self.state = LinkState::Dialling;
        self.stats.dial_attempts += 1;
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let client = self.build_client();
                self.client = Some(client.clone());
                client
            }
        };
        let mut request = client
            .ws(self.settings.url.as_str())
            .max_frame_size(MAX_INBOUND_FRAME);
        if !self.settings.token.is_empty() {
            request = request.bearer_auth(self.settings.token.expose());
        }
        log::debug!(
            "platform link: dialling {} (attempt {})",
            loggable_url(&self.settings.url),
            self.backoff.attempts() + 1
        );
        ctx.spawn(async move { request.connect().await }.into_actor(self).map(
            move |result, link, ctx| match result {
                Ok((_response, framed)) => link.on_connected(generation, framed, ctx),
                Err(e) => link.on_dial_failed(generation, classify(e), ctx),
            },
        ));
    }

    fn on_dial_failed(&mut self, generation: u64, error: LinkError, ctx: &mut Context<Self>) {
        if self.closing {
            ctx.stop();
            return;
        }
        if generation != self.generation {
            return;
        }
        self.state = LinkState::Down;
        let delay = self.backoff.next_delay(&mut self.rng);
        let url = loggable_url(&self.settings.url);
        match &error {
            LinkError::Unauthorized { .. } => {
                self.stats.auth_failures += 1;
                log::error!(
                    "platform link: {error} at {url}; check platform.token (token {}); retrying in {:.1} s",
                    if self.settings.token.is_empty() { "not set" } else { "set, not shown" },
                    delay.as_secs_f64()
                );
            }
            e if e.is_configuration_problem() => log::error!(
                "platform link: {error} ({url}); retrying in {:.1} s",
                delay.as_secs_f64()
            ),
            _ => log::warn!(
                "platform link: {error} ({url}); retrying in {:.1} s",
                delay.as_secs_f64()
            ),
        }
        ctx.run_later(delay, |link, ctx| link.dial(ctx));
    }

    fn on_connected(
        &mut self,
        generation: u64,
        framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
        ctx: &mut Context<Self>,
    ) {
        if generation != self.generation || self.closing {
            return;
        }
        let (sink, stream) = framed.split();
        let (tx, rx) = mpsc::unbounded::<WsMessage>();
        let in_flight = Rc::new(Cell::new(0usize));
        let taken = in_flight.clone();
        // The writer is its own task, not the actor's: when the connection (or the whole
        // actor) is dropped, `tx` closes and the writer still flushes what it holds, a final
        // Close frame included, before closing the socket.
        let link = ctx.address();
        actix_rt::spawn(async move {
            let written = rx
                .map(move |message| {
                    taken.set(taken.get().saturating_sub(1));
                    Ok(message)
                })
                .forward(sink)
                .await;
            if let Err(e) = written {
                link.do_send(WriterFailed {
                    generation,
                    error: e.to_string(),
                });
            }
        });
        let reader = ctx.add_stream(
            stream
                .map(move |item| Inbound::Frame(generation, item))
                .chain(futures::stream::once(
                    async move { Inbound::Closed(generation) },
                )),
        );
        self.state = LinkState::Up(Connection {
            generation,
            tx,
            in_flight,
            reader,
            last_heard: Instant::now(),
            snapshot_accepted: false,
            largest_frame: 0,
        });
        self.stats.connects += 1;
        self.stats.reconnects = self.stats.connects.saturating_sub(1);

        let devices = self.snapshot.snapshot();
        let parts = snapshot_parts(&devices, self.frame_bound);
        drop(devices);
        let owed = self.queue.len();
        log::info!(
            "platform link: connected to {} as {:?}; sending snapshot of {} devices in {} parts (largest {} bytes, bound {}), then {} owed frames",
            loggable_url(&self.settings.url),
            self.settings.gateway_id,
            parts.devices,
            parts.frames.len(),
            parts.largest_part,
            self.frame_bound,
            owed
        );
        if parts.truncated + parts.skipped > 0 {
            self.stats.devices_truncated += parts.truncated as u64;
            self.stats.devices_skipped += parts.skipped as u64;
            if let Some(n) = OVERSIZE_LOG.note() {
                log::warn!(
                    "platform link: {} device(s) too big for a frame of {} bytes went into the snapshot with their links truncated (\"links_truncated\": true) and {} larger even without links were left out ({n} oversize event(s) in the last {} s); raise platform.max_frame_bytes if the platform accepts larger frames",
                    parts.truncated,
                    self.frame_bound,
                    parts.skipped,
                    crate::limits::log_throttle::REPORT_EVERY_S
                );
            }
        }
        // hello and the snapshot go first and whole, whatever the writer's backlog.
        let hello = hello(&self.settings.gateway_id, parts.devices);
        for frame in std::iter::once(hello).chain(parts.frames) {
            if !self.write(&frame) {
                return;
            }
        }
        // Answered only once the platform has read every part before it (frames are read in
        // order): the proof the snapshot was accepted, which resets the back-off.
        if let LinkState::Up(conn) = &self.state {
            let _ = conn.send(WsMessage::Ping(SNAPSHOT_PROBE.into()));
        }
        self.stats.connected = true;
        self.pump(ctx);
    }

    /// Whether the writer can take a frame now (up, and not backed up).
    fn writer_has_room(&self) -> bool {
        if self.closing {
            return false;
        }
        match &self.state {
            LinkState::Up(conn) => !conn.tx.is_closed() && conn.in_flight.get() < WRITER_HIGH_WATER,
            _ => false,
        }
    }

    /// Move owed frames to the writer, oldest first, while it has room.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while !self.queue.is_empty() && self.writer_has_room() {
            let Some(frame) = self.queue.pop_front() else {
                break;
            };
            if !self.write(&frame) {
                let generation = self.generation;
                self.on_lost(generation, "socket writer stopped", ctx);
                break;
            }
        }
        self.stats.queued = self.queue.len();
    }

    /// Hand a frame to the socket writer. False when the writer is gone (the socket died).
    /// Nothing larger than the frame bound is written: a device frame goes with its links
    /// truncated, a command result becomes a failure saying why, anything else is skipped
    /// (counted and logged): the platform would only close the link on it.
    fn write(&mut self, frame: &OutboundFrame) -> bool {
        let LinkState::Up(_) = &self.state else {
            return false;
        };
        let text = match frame_within(frame, self.frame_bound) {
            Ok(fitted) => {
                if fitted.device_truncated {
                    self.stats.devices_truncated += 1;
                    if let Some(n) = OVERSIZE_LOG.note() {
                        log::warn!(
                            "platform link: a device frame over {} bytes was sent with its links truncated ({n} oversize event(s) in the last {} s); raise platform.max_frame_bytes if the platform accepts larger frames",
                            self.frame_bound,
                            crate::limits::log_throttle::REPORT_EVERY_S
                        );
                    }
                }
                fitted.text
            }
            Err(too_big) => {
                self.stats.frames_too_big += 1;
                if let Some(n) = OVERSIZE_LOG.note() {
                    log::error!(
                        "platform link: a frame of {} bytes is over the platform's frame limit of {} bytes (platform.max_frame_bytes) and was not sent ({n} oversize event(s) in the last {} s)",
                        too_big.bytes,
                        self.frame_bound,
                        crate::limits::log_throttle::REPORT_EVERY_S
                    );
                }
                return true;
            }
        };
        let LinkState::Up(conn) = &mut self.state else {
            return false;
        };
        conn.largest_frame = conn.largest_frame.max(text.len());
        if !conn.send(WsMessage::Text(text.into())) {
            return false;
        }
        self.stats.frames_sent += 1;
        crate::metrics::global().record_frame_sent(frame.into());
        true
    }

    /// Send now when up and nothing older is waiting; otherwise owe it.
    fn deliver(&mut self, frame: OutboundFrame, ctx: &mut Context<Self>) {
        if self.queue.is_empty() && self.writer_has_room() {
            if self.write(&frame) {
                return;
            }
            let generation = self.generation;
            self.owe(frame);
            self.on_lost(generation, "socket writer stopped", ctx);
            return;
        }
        self.owe(frame);
    }

    fn owe(&mut self, frame: OutboundFrame) {
        match self.queue.push(frame) {
            PushOutcome::Queued => {}
            PushOutcome::DroppedData => {
                let n = self.queue.dropped_data();
                if n == 1 || n % 1_000 == 0 {
                    log::warn!(
                        "platform link: owed queue full ({} frames); {n} data frames dropped so far",
                        self.queue.capacity()
                    );
                }
            }
            PushOutcome::DroppedEvent => {
                let n = self.queue.dropped_events();
                if n == 1 || n % 100 == 0 {
                    log::error!(
                        "platform link: owed queue full of events and results ({} frames); dropped the oldest, {n} lost so far (the next snapshot restores the registry view)",
                        self.queue.capacity()
                    );
                }
            }
        }
        self.stats.queued = self.queue.len();
    }

    /// The connection of `generation` is gone: owe frames from now on and re-dial later.
    fn on_lost(&mut self, generation: u64, why: &str, ctx: &mut Context<Self>) {
        let LinkState::Up(conn) = &self.state else {
            return;
        };
        if conn.generation != generation {
            return;
        }
        if self.closing {
            ctx.stop();
            return;
        }
        let mut refused_snapshot = None;
        if let LinkState::Up(conn) = std::mem::replace(&mut self.state, LinkState::Down) {
            ctx.cancel_future(conn.reader);
            // Best effort: tell the platform we are going; dropping `tx` then closes the socket.
            let _ = conn.send(WsMessage::Close(None));
            if !conn.snapshot_accepted {
                refused_snapshot = Some(conn.largest_frame);
            }
        }
        self.stats.connected = false;
        let delay = self.backoff.next_delay(&mut self.rng);
        match refused_snapshot {
            // The back-off was not reset on this connection, so these grow to
            // `reconnect_max`; the line says why at most once per 10 s.
            Some(largest) => {
                self.stats.snapshots_unaccepted += 1;
                if let Some(n) = UNACCEPTED_LOG.note() {
                    log::error!(
                        "platform link: the connection ended before the platform accepted the snapshot ({why}); largest frame sent {largest} bytes, frame bound {} bytes (platform.max_frame_bytes; a platform whose frame limit is lower refuses larger frames); {n} such connection(s) in the last {} s; re-dialling in {:.1} s",
                        self.frame_bound,
                        crate::limits::log_throttle::REPORT_EVERY_S,
                        delay.as_secs_f64()
                    );
                }
            }
            None => log::warn!(
                "platform link: connection lost ({why}); queueing frames, re-dialling in {:.1} s",
                delay.as_secs_f64()
            ),
        }
        ctx.run_later(delay, |link, ctx| link.dial(ctx));
    }

    /// The registry feed dropped `dropped` events for this link: give the platform a fresh
    /// snapshot, which protocol v1 allows only after `hello` on a new connection.
    fn resync(&mut self, dropped: u64, ctx: &mut Context<Self>) {
        self.stats.resyncs += 1;
        if let Some(n) = RESYNC_LOG.note() {
            log::warn!(
                "platform link: registry events dropped ({dropped} this time, {n} resync(s) in the last {} s); reconnecting to send a fresh snapshot",
                crate::limits::log_throttle::REPORT_EVERY_S
            );
        }
        if self.closing {
            return;
        }
        let LinkState::Up(_) = &self.state else {
            // Down or dialling: the next connect reads the snapshot after this point anyway.
            return;
        };
        if let LinkState::Up(conn) = std::mem::replace(&mut self.state, LinkState::Down) {
            ctx.cancel_future(conn.reader);
            // Queued behind the frames the writer holds, which are written first.
            let _ = conn.send(WsMessage::Close(Some(awc::ws::CloseCode::Restart.into())));
        }
        self.stats.connected = false;
        self.dial(ctx);
    }

    /// Any Pong after the snapshot probe (every Ping on a connection follows its snapshot):
    /// the platform has read every part.
    fn on_pong(&mut self) {
        let LinkState::Up(conn) = &mut self.state else {
            return;
        };
        if conn.snapshot_accepted {
            return;
        }
        conn.snapshot_accepted = true;
        self.backoff.reset();
        self.stats.snapshots_accepted += 1;
        log::debug!("platform link: the platform accepted the snapshot");
    }

    /// The platform closed with 1009 "message too big": its frame limit is below our bound.
    /// Halve the bound below the largest frame this connection carried (never under
    /// [`MIN_FRAME_BYTES`]), so the next snapshot is cut finer and events get through.
    fn lower_frame_bound(&mut self) {
        let LinkState::Up(conn) = &self.state else {
            return;
        };
        let largest = conn.largest_frame;
        let lowered = (self.frame_bound.min(largest) / 2).max(MIN_FRAME_BYTES);
        if lowered >= self.frame_bound {
            log::error!(
                "platform link: the platform refused a frame as too big (close 1009; largest frame sent {largest} bytes) although frames are already at the floor of {MIN_FRAME_BYTES} bytes"
            );
            return;
        }
        log::error!(
            "platform link: the platform refused a frame as too big (close 1009; largest frame sent {largest} bytes): frames are limited to {lowered} bytes from now on; set platform.max_frame_bytes (now {}) to the platform's limit",
            self.settings.max_frame_bytes
        );
        self.frame_bound = lowered;
        self.stats.frame_bound = lowered;
    }

    fn check_liveness(&mut self, ctx: &mut Context<Self>) {
        let LinkState::Up(conn) = &self.state else {
            return;
        };
        if conn.last_heard.elapsed() > self.settings.pong_timeout {
            let generation = conn.generation;
            let silence = conn.last_heard.elapsed().as_secs_f64();
            self.on_lost(
                generation,
                &format!("no pong or frame for {silence:.1} s"),
                ctx,
            );
            return;
        }
        let _ = conn.send(WsMessage::Ping(Default::default()));
    }

    fn on_text(&mut self, bytes: &[u8], ctx: &mut Context<Self>) {
        let parsed = match std::str::from_utf8(bytes) {
            Ok(text) => parse_inbound(text),
            Err(e) => Err(ProtocolError::MalformedJson {
                reason: format!("text frame is not UTF-8: {e}"),
            }),
        };
        match parsed {
            Ok(InboundFrame::Command(command)) => self.forward_command(command, ctx),
            Ok(InboundFrame::Error { message, id }) => {
                log::warn!(
                    "platform link: the platform reported an error{}: {message}",
                    id.map(|id| format!(" for {id}")).unwrap_or_default()
                );
            }
            Err(error) => {
                log::log!(
                    super::protocol::PLATFORM_FAULT_LEVEL,
                    "platform link: unusable frame from the platform: {error}"
                );
                self.deliver(error.reply(), ctx);
            }
        }
    }

    fn forward_command(&mut self, command: super::protocol::Command, ctx: &mut Context<Self>) {
        match &self.commands {
            Some(recipient) if recipient.connected() => {
                // do_send, not try_send: the Executer bounds its own work and answers
                // `overloaded` itself; a small actix mailbox must not refuse bursts here.
                recipient.do_send(PlatformCommand {
                    command,
                    received_at_ms: now_ms(),
                });
            }
            _ => {
                let message = "this gateway executes no commands (no command executer is running)";
                log::log!(
                    super::protocol::command_failure_level(CommandErrorKind::BadCommand),
                    "platform link: command {:?} refused: {message}",
                    command.id
                );
                let result =
                    CommandResult::failed(command.id, CommandErrorKind::BadCommand, message);
                self.deliver(OutboundFrame::CommandResult(result), ctx);
            }
        }
    }
}

impl Actor for PlatformLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Data frames and command results arrive with try_send: this is their bound.
        ctx.set_mailbox_capacity(SUBSCRIBER_MAILBOX);
        let interval = self.settings.ping_interval;
        ctx.run_interval(interval, |link, ctx| link.check_liveness(ctx));
        ctx.run_interval(PUMP_INTERVAL, |link, ctx| {
            if !link.queue.is_empty() {
                link.pump(ctx);
            }
        });
        self.dial(ctx);
    }
}

impl StreamHandler<Inbound> for PlatformLink {
    fn handle(&mut self, item: Inbound, ctx: &mut Context<Self>) {
        let current = match &mut self.state {
            LinkState::Up(conn) => conn,
            _ => return,
        };
        let generation = match &item {
            Inbound::Frame(g, _) | Inbound::Closed(g) => *g,
        };
        if generation != current.generation {
            return;
        }
        current.last_heard = Instant::now();
        match item {
            Inbound::Closed(g) => self.on_lost(g, "closed by the network", ctx),
            Inbound::Frame(g, Err(e)) => self.on_lost(g, &format!("protocol error: {e}"), ctx),
            Inbound::Frame(g, Ok(frame)) => match frame {
                Frame::Text(bytes) => self.on_text(&bytes, ctx),
                Frame::Binary(_) => {
                    log::log!(
                        super::protocol::PLATFORM_FAULT_LEVEL,
                        "platform link: binary frame from the platform; answered with an error"
                    );
                    self.deliver(ProtocolError::BinaryFrame.reply(), ctx);
                }
                Frame::Continuation(Item::Last(_)) => {
                    self.deliver(
                        OutboundFrame::Error {
                            message: "fragmented frames are not supported; send each JSON object in one text frame".into(),
                            id: None,
                        },
                        ctx,
                    );
                }
                Frame::Continuation(_) => {}
                Frame::Ping(payload) => {
                    if let LinkState::Up(conn) = &self.state {
                        let _ = conn.send(WsMessage::Pong(payload));
                    }
                }
                Frame::Pong(_) => self.on_pong(),
                Frame::Close(reason) => {
                    if reason
                        .as_ref()
                        .is_some_and(|r| r.code == awc::ws::CloseCode::Size)
                    {
                        self.lower_frame_bound();
                    }
                    let why = match reason {
                        Some(r) => format!(
                            "platform closed the link ({:?}{})",
                            r.code,
                            r.description.map(|d| format!(": {d}")).unwrap_or_default()
                        ),
                        None => "platform closed the link".to_owned(),
                    };
                    self.on_lost(g, &why, ctx);
                }
            },
        }
    }

    /// The reader stream ending is already reported by its `Closed` item; the actor must not
    /// stop (the default) when a connection ends.
    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// The socket writer of `generation` failed (private to the link).
#[derive(Message)]
#[rtype(result = "()")]
struct WriterFailed {
    generation: u64,
    error: String,
}

impl Handler<WriterFailed> for PlatformLink {
    type Result = ();

    fn handle(&mut self, failed: WriterFailed, ctx: &mut Context<Self>) {
        self.on_lost(
            failed.generation,
            &format!("write failed: {}", failed.error),
            ctx,
        );
    }
}

impl Handler<StopLink> for PlatformLink {
    type Result = ();

    fn handle(&mut self, _: StopLink, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.stats.connected = false;
        if !self.queue.is_empty() {
            log::warn!(
                "platform link: stopping with {} frames still owed to the platform",
                self.queue.len()
            );
        }
        match &self.state {
            LinkState::Up(conn) => {
                // The closing handshake: our Close, the platform's Close, then the platform
                // closes TCP. Stopping the actor drops the writer's sender, which ends it.
                let _ = conn.send(WsMessage::Close(Some(awc::ws::CloseCode::Away.into())));
                ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
            }
            _ => ctx.stop(),
        }
    }
}

impl Handler<RegistryEvent> for PlatformLink {
    type Result = ();

    fn handle(&mut self, event: RegistryEvent, ctx: &mut Context<Self>) {
        let frame = OutboundFrame::from_event(&event, now_ms());
        self.deliver(frame, ctx);
    }
}

impl Handler<RegistryFeed> for PlatformLink {
    type Result = ();

    fn handle(&mut self, feed: RegistryFeed, ctx: &mut Context<Self>) {
        match feed.item {
            FeedItem::Event(event) => {
                let frame = OutboundFrame::from_event(&event, now_ms());
                self.deliver(frame, ctx);
            }
            FeedItem::Resync { dropped } => self.resync(dropped, ctx),
        }
    }
}

impl Handler<SendFrame> for PlatformLink {
    type Result = ();

    fn handle(&mut self, SendFrame(frame): SendFrame, ctx: &mut Context<Self>) {
        self.deliver(frame, ctx);
    }
}

impl Handler<DataFrames> for PlatformLink {
    type Result = ();

    /// Every frame goes to the writer or, behind a busy writer or while down, to the owed
    /// queue; the Observer's hand-off permits return when this returns.
    fn handle(&mut self, batch: DataFrames, ctx: &mut Context<Self>) {
        for frame in batch.frames {
            self.deliver(frame, ctx);
        }
    }
}

impl Handler<SetCommandRecipient> for PlatformLink {
    type Result = ();

    fn handle(
        &mut self,
        SetCommandRecipient(recipient): SetCommandRecipient,
        _: &mut Context<Self>,
    ) {
        self.commands = recipient;
    }
}

impl Handler<GetLinkStats> for PlatformLink {
    type Result = MessageResult<GetLinkStats>;

    fn handle(&mut self, _: GetLinkStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.queued = self.queue.len();
        stats.in_flight = match &self.state {
            LinkState::Up(conn) => conn.in_flight.get(),
            _ => 0,
        };
        stats.dropped_data = self.queue.dropped_data();
        stats.dropped_events = self.queue.dropped_events();
        MessageResult(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_lose_credentials_and_queries() {
        assert_eq!(
            loggable_url("wss://user:secret@platform.example:8443/gw?token=abc"),
            "wss://platform.example:8443/gw"
        );
        assert_eq!(loggable_url("ws://127.0.0.1:9000"), "ws://127.0.0.1:9000");
        assert_eq!(loggable_url("ws://h/p#frag"), "ws://h/p");
    }

    #[test]
    fn http_401_and_403_mean_a_refused_token() {
        use awc::http::StatusCode;
        assert_eq!(
            classify(WsClientError::InvalidResponseStatus(
                StatusCode::UNAUTHORIZED
            )),
            LinkError::Unauthorized { status: 401 }
        );
        assert_eq!(
            classify(WsClientError::InvalidResponseStatus(StatusCode::FORBIDDEN)),
            LinkError::Unauthorized { status: 403 }
        );
        assert_eq!(
            classify(WsClientError::InvalidResponseStatus(StatusCode::NOT_FOUND)),
            LinkError::UpgradeRefused { status: 404 }
        );
    }
}
