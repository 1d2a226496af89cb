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
//! and `data` is what gets dropped first. Reconnects follow [`ReconnectBackoff`], which is reset only when
//! the Pong to the Ping behind the snapshot arrives: a platform that refuses a snapshot frame
//! and closes (at every connect, every 0.5 s, forever) is re-dialled ever more
//! slowly, with one error line per 10 s naming the cause. A close with 1009 "message too big"
//! also halves the frame bound below the largest frame sent (floor [`MIN_FRAME_BYTES`]), so a
//! platform whose limit is lower than `platform.max_frame_bytes` still gets everything after a
//! few reconnects. A WebSocket ping goes
//! out every `ping_interval`; a link that has heard nothing (no pong, no frame) for
//! `pong_timeout` is closed and re-dialled.
//!
//! Who calls it: the Registry publishes [`RegistryEvent`](crate::registry::RegistryEvent)s to
//! it through the bounded registry feed (`SubscribeFeed(addr.recipient())`); the Executer sends
//! [`SendFrame`](super::SendFrame)s with `try_send` (mailbox [`SUBSCRIBER_MAILBOX`]); the
//! Observer sends batches of `data` frames ([`DataFrames`](super::DataFrames)) with `do_send`,
//! bounded by its own hand-off permits, so a burst of a whole fleet's values is never refused
//! here; `command` frames go to the [`PlatformCommand`] recipient.
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
//! - Acked mode numbers the snapshot behind the events numbered while `hello` waited for its
//!   answer, so it reads the registry again once the answer came (a snapshot older than events
//!   numbered before it would undo them on the platform); `hello.devices` is the count at the
//!   dial, which the snapshot may then differ from by those changes.
//! - The token is sent in one header and never logged; the URL is logged without its query or
//!   user-info, in case someone put a credential there.
//!
//! The actor is split by concept: `dial` (connecting, TLS, the hello and snapshot after a
//! connect), `handoff` (frames to the socket writer or the owed queue), `connection` (one
//! connection's life: liveness, the snapshot's acceptance, loss and resync), `inbound` (frames
//! from the platform, commands), `numbered` (the leader of replicas on etcd: events from the
//! cluster feed, seqs derived from revisions) and `handlers` (the actor's messages and its
//! stats).

mod connection;
mod dial;
mod handlers;
mod handoff;
mod inbound;
mod numbered;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use self::connection::LinkState;
use super::backoff::ReconnectBackoff;
use super::fit::MIN_FRAME_BYTES;
use super::messages::{LinkStats, PlatformCommand};
use super::outbox::ledger::Bound;
use super::outbox::{Ledger, OutboxStore};
use crate::limits::LogThrottle;
use crate::registry::subscription::SUBSCRIBER_MAILBOX;
use crate::registry::Registration;
use crate::secret::Secret;

/// How often the link pings the platform.
pub(crate) const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(15);
/// Silence (no pong, no frame) after which the link is declared dead: two missed pings.
pub(crate) const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(40);
/// Budget for TCP + TLS + the upgrade exchange.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames handed to the socket writer and not yet taken by it. Past this the platform (or the
/// network) is slower than the gateway: further frames wait in the bounded owed queue, where
/// `data` is dropped first, instead of piling up without bound in the writer.
pub const WRITER_HIGH_WATER: usize = 4_096;
/// How often frames waiting behind a busy writer are moved on.
const PUMP_INTERVAL: Duration = Duration::from_millis(10);
/// Frames that could not be fitted into the frame bound, and devices sent truncated.
static OVERSIZE_LOG: LogThrottle = LogThrottle::new();

/// The registry as it is now, for the snapshot after each connect. The lead implements it for
/// `RegistryReader` (live registrations in id order).
pub trait SnapshotSource: Send + Sync + 'static {
    fn snapshot(&self) -> Vec<Arc<Registration>>;

    /// The snapshot, if it reflects at least etcd revision `revision` (replicas: the snapshot
    /// follows the events the cluster feed sent before it, so it must not be older than they
    /// are). A source without revisions always has it.
    fn snapshot_at(&self, revision: i64) -> Option<Vec<Arc<Registration>>> {
        let _ = revision;
        Some(self.snapshot())
    }
}

/// How the link numbers its frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Numbering {
    /// One gateway: seqs count up, continuing after a restart from the outbox store's mark.
    #[default]
    Local,
    /// The leader of replicas on etcd (`docs/ha-etcd.md` §8): events come from the cluster
    /// feed with seqs derived from etcd revisions ([`NumberedEvents`](super::NumberedEvents)),
    /// other frames are numbered after the feed's position, and the link dials only once the
    /// feed has caught up. `hello` names `replica`.
    Revision { replica: String },
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
    /// `platform.outbox_max_bytes`: the frame text the outbox holds at most.
    pub outbox_max_bytes: usize,
    /// `platform.durable_data`: `data` frames are stored like events (else memory only).
    pub durable_data: bool,
    /// Where events and results are stored before they count as sent (the registry's
    /// database); `None` keeps the outbox in memory only.
    pub outbox: Option<OutboxStore>,
    pub numbering: Numbering,
}

pub struct PlatformLink {
    settings: LinkSettings,
    snapshot: Arc<dyn SnapshotSource>,
    commands: Option<Recipient<PlatformCommand>>,
    client: Option<awc::Client>,
    state: LinkState,
    generation: u64,
    /// Every frame owed to the platform, until acknowledged (or written, with a v1 platform).
    outbox: Ledger,
    /// Seqs below this are reserved in the store (`u64::MAX` without one).
    seq_reserved: u64,
    /// A flush of the outbox store is running / wanted after it.
    flush_in_flight: bool,
    flush_wanted: bool,
    /// The registry read at connect, sent once the mode is negotiated as version 1.
    pending_snapshot: Option<Vec<Arc<Registration>>>,
    backoff: ReconnectBackoff,
    rng: StdRng,
    stats: LinkStats,
    /// The largest frame written: `platform.max_frame_bytes`, lowered when the platform closes
    /// with 1009 "message too big" (its limit is below the configured one).
    frame_bound: usize,
    /// A `StopLink` sent our Close frame: nothing more is written, no re-dial, stop when the
    /// platform answers (or after `CLOSE_GRACE`).
    closing: bool,
    /// With [`Numbering::Revision`]: where the cluster feed is.
    feed: Option<numbered::FeedState>,
}

impl PlatformLink {
    /// Start the link on the current arbiter; it dials at once. `commands` may be set later
    /// with [`SetCommandRecipient`](super::SetCommandRecipient).
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
        let bound = Bound {
            max_bytes: settings.outbox_max_bytes,
            max_frames: settings.queue_capacity,
        };
        let (outbox, seq_reserved) = open_outbox(bound, settings.outbox.as_ref());
        let backoff = ReconnectBackoff::new(settings.reconnect_initial, settings.reconnect_max);
        let frame_bound = settings.max_frame_bytes.max(MIN_FRAME_BYTES);
        let settings_numbering = settings.numbering.clone();
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
            outbox,
            seq_reserved,
            flush_in_flight: false,
            flush_wanted: false,
            pending_snapshot: None,
            backoff,
            rng: StdRng::from_entropy(),
            stats,
            frame_bound,
            closing: false,
            feed: match settings_numbering {
                Numbering::Local => None,
                Numbering::Revision { .. } => Some(numbered::FeedState::default()),
            },
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
            if link.outbox.unsent() > 0 {
                link.pump(ctx);
            }
        });
        // A cluster's leader dials once its feed has caught up (`numbered`).
        if self.feed.is_none() {
            self.dial(ctx);
        }
    }
}

/// The outbox at start: what the store kept from before a restart, owed again, with seqs
/// continuing above every seq reserved before. A store that cannot be read is logged and the
/// outbox runs in memory (events are then lost in a restart, as in protocol v1).
fn open_outbox(bound: Bound, store: Option<&OutboxStore>) -> (Ledger, u64) {
    let Some(store) = store else {
        return (Ledger::new(bound, 1), u64::MAX);
    };
    let loaded = match store.load() {
        Ok(loaded) => loaded,
        Err(e) => {
            log::error!("platform link: {e}; the outbox starts empty");
            return (Ledger::new(bound, 1), u64::MAX);
        }
    };
    for skipped in &loaded.skipped {
        log::error!("platform link: a stored outbox record was skipped: {skipped}");
    }
    let mut ledger = Ledger::new(bound, loaded.next_seq);
    let owed = loaded.entries.len();
    let restored = ledger.restore(loaded.entries);
    if let Err(e) = store.remove(&restored.removed) {
        log::error!("platform link: {e}");
    }
    let reserved = super::outbox::store::block_end(ledger.next_seq());
    if let Err(e) = store.reserve(reserved) {
        log::error!("platform link: cannot reserve sequence numbers: {e}; after a restart the platform may take new frames for duplicates");
    }
    if owed > 0 {
        log::info!(
            "platform link: {owed} frame(s) owed from before the restart (seq {}..); next seq {}",
            ledger.acked() + 1,
            ledger.next_seq()
        );
    }
    (ledger, reserved)
}
