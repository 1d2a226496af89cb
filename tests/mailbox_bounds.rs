//! Bounded mailboxes on the hot paths (issue 11, actors.md "Queues and mailboxes"), with real
//! actors: a registry feed subscriber that stalls is resynced from the index and ends with the
//! registry's state (a test mirror, and PlatformLink against the real platform-sim, which must
//! see a fresh snapshot holding every registration); command results refused by a full link
//! mailbox wait and all arrive, none beyond the mailbox's capacity at a time.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use coap_gateway::coap::{
    Code, Endpoint, HandlerFuture, InboundRequest, OutboundResponse, RequestHandler,
    TransmissionParams,
};
use coap_gateway::executer::{self, ExecuterSettings, GetExecuterStats};
use coap_gateway::platform::{
    Command, GetLinkStats, OutboundFrame, PlatformCommand, PlatformLink, SendFrame, SnapshotSource,
};
use coap_gateway::registry::subscription::{EVENT_BACKLOG, RESUME_BELOW};
use coap_gateway::registry::{
    self, EndpointName, FeedItem, Register, Registration, RegistrationId, RegistryConfig,
    RegistryEvent, RegistryFeed, RegistryReader, Remove, Status, SubscribeFeed, Update,
};
use common::platform_sim::{mirror_in_seq_order, PlatformSim};
use common::stalling_snapshot::StallingSnapshot;
use futures::StreamExt;
use link_format::Link;
use serde_json::Value;

/// More than the feed's backlog, so a stalled subscriber must overflow.
const DEVICES: usize = EVENT_BACKLOG + 1_500;
const WAIT: Duration = Duration::from_secs(60);

fn start_registry() -> (Addr<registry::Registry>, RegistryReader, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (addr, reader) = registry::start(RegistryConfig {
        data_dir: dir.path().join("db"),
        cache_mb: 16,
        expiry_grace_s: 0,
        max_registrations: None,
    })
    .unwrap();
    (addr, reader, dir)
}

fn register(i: usize) -> Register {
    Register {
        identity: None,
        ep: EndpointName::new(format!("node{i}")).unwrap(),
        d: None,
        base: Some(format!("coap://127.0.0.1:{}", 20_000 + i % 30_000)),
        lifetime_s: 3_600,
        attrs: Vec::new(),
        links: vec![Link::new("/s")],
        source: SocketAddr::from(([127, 0, 0, 1], 20_000 + (i % 30_000) as u16)),
    }
}

/// Register `n` devices, 256 at a time (group commit keeps it quick); returns their ids.
async fn register_many(registry: &Addr<registry::Registry>, n: usize) -> Vec<RegistrationId> {
    let registry = registry.clone();
    futures::stream::iter(0..n)
        .map(|i| {
            let registry = registry.clone();
            async move {
                registry
                    .send(register(i))
                    .await
                    .unwrap()
                    .unwrap()
                    .registration
                    .id
            }
        })
        .buffer_unordered(256)
        .collect()
        .await
}

fn update(id: RegistrationId) -> Update {
    Update {
        identity: None,
        id,
        lifetime_s: Some(7_200),
        base: None,
        attrs: Vec::new(),
        source: SocketAddr::from(([127, 0, 0, 1], 1)),
    }
}

/// Every live registration, by id, as (lifetime, status): what a subscriber must mirror.
fn registry_view(reader: &RegistryReader) -> BTreeMap<u64, (u32, bool)> {
    view_of(reader.with_index(|idx| idx.live(0).cloned().collect::<Vec<_>>()))
}

fn view_of(regs: impl IntoIterator<Item = Arc<Registration>>) -> BTreeMap<u64, (u32, bool)> {
    regs.into_iter()
        .map(|r| (r.id.0, (r.lifetime_s, r.status == Status::Connected)))
        .collect()
}

// ----- a stalled feed subscriber -----------------------------------------------------------------

#[derive(Default)]
struct MirrorState {
    regs: BTreeMap<u64, Arc<Registration>>,
    events: usize,
    events_before_first_resync: Option<usize>,
    resyncs: usize,
    dropped_reported: u64,
}

/// A feed subscriber that keeps a copy of the registry; `Block` stalls its thread.
struct Mirror {
    reader: RegistryReader,
    state: Arc<Mutex<MirrorState>>,
}

impl Actor for Mirror {
    type Context = Context<Self>;
}

impl Handler<RegistryFeed> for Mirror {
    type Result = ();
    fn handle(&mut self, feed: RegistryFeed, _: &mut Context<Self>) {
        let mut state = self.state.lock().unwrap();
        match feed.item {
            FeedItem::Event(event) => {
                state.events += 1;
                match event {
                    RegistryEvent::Registered(r)
                    | RegistryEvent::Updated(r)
                    | RegistryEvent::StatusChanged(r) => {
                        state.regs.insert(r.id.0, r);
                    }
                    RegistryEvent::Removed { registration, .. } => {
                        state.regs.remove(&registration.id.0);
                    }
                }
            }
            FeedItem::Resync { dropped } => {
                state.resyncs += 1;
                state.dropped_reported += dropped;
                if state.events_before_first_resync.is_none() {
                    state.events_before_first_resync = Some(state.events);
                }
                state.regs = self
                    .reader
                    .with_index(|idx| idx.live(0).map(|r| (r.id.0, Arc::clone(r))).collect());
            }
        }
    }
}

/// Blocks the receiving actor's thread until released (or 30 s), after saying it is blocked.
#[derive(Message)]
#[rtype(result = "()")]
struct Block {
    entered: std_mpsc::Sender<()>,
    release: std_mpsc::Receiver<()>,
}

impl Handler<Block> for Mirror {
    type Result = ();
    fn handle(&mut self, block: Block, _: &mut Context<Self>) {
        let _ = block.entered.send(());
        let _ = block.release.recv_timeout(Duration::from_secs(30));
    }
}

/// Stall `addr`'s thread; returns the key that releases it.
fn stall<A>(addr: &Addr<A>) -> std_mpsc::Sender<()>
where
    A: Actor<Context = Context<A>> + Handler<Block>,
{
    let (entered_tx, entered) = std_mpsc::channel();
    let (release, release_rx) = std_mpsc::channel();
    addr.do_send(Block {
        entered: entered_tx,
        release: release_rx,
    });
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the actor took the Block message");
    release
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_stalled_feed_subscriber_is_resynced_and_ends_with_the_registry_state() {
    let (registry, reader, _dir) = start_registry();
    let state = Arc::new(Mutex::new(MirrorState::default()));
    let arbiter = Arbiter::new();
    let mirror = {
        let (reader, state) = (reader.clone(), state.clone());
        Mirror::start_in_arbiter(&arbiter.handle(), move |_| Mirror { reader, state })
    };
    registry
        .send(SubscribeFeed(mirror.clone().recipient()))
        .await
        .unwrap();

    let release = stall(&mirror);
    let ids = register_many(&registry, DEVICES).await;
    // Changes that the stalled mirror can only learn about through the resync.
    for id in &ids[..100] {
        registry.send(update(*id)).await.unwrap().unwrap();
    }
    for id in &ids[100..200] {
        registry
            .send(Remove::by_gateway(*id))
            .await
            .unwrap()
            .unwrap();
    }
    let published = DEVICES + 200;
    release.send(()).unwrap();

    let expected = registry_view(&reader);
    assert_eq!(expected.len(), DEVICES - 100);
    wait_until("the mirror to resync and match the registry", || {
        let s = state.lock().unwrap();
        s.resyncs >= 1 && view_of(s.regs.values().cloned()) == expected
    })
    .await;
    {
        let s = state.lock().unwrap();
        let before = s.events_before_first_resync.unwrap();
        assert!(
            before <= EVENT_BACKLOG,
            "{before} events queued for a stalled subscriber (bound {EVENT_BACKLOG})"
        );
        assert!(
            s.dropped_reported > 0,
            "the resync reports what was dropped"
        );
        assert!(
            s.events < published,
            "events were dropped while it was stalled ({} of {published} delivered)",
            s.events
        );
        assert_eq!(
            s.resyncs, 1,
            "one resync, once its backlog drained below {RESUME_BELOW}"
        );
    }

    // In sync again: events flow as before, with no further resync.
    for id in &ids[200..250] {
        registry
            .send(Remove::by_gateway(*id))
            .await
            .unwrap()
            .unwrap();
    }
    let expected = registry_view(&reader);
    wait_until("the mirror to follow later events", || {
        let s = state.lock().unwrap();
        view_of(s.regs.values().cloned()) == expected
    })
    .await;
    assert_eq!(state.lock().unwrap().resyncs, 1);
    arbiter.stop();
}

// ----- PlatformLink: a fresh snapshot after an overflow ------------------------------------------

/// The endpoint names of the newest whole snapshot: the one whose last part has the highest
/// seq, with every part below it (parts of one snapshot have consecutive seqs). By seq, not
/// by arrival: platform-sim logs the frames of all sessions in one list, so the old session's
/// last frames (its own snapshot among them) can land after the new session's `hello`.
fn newest_snapshot(frames: &[Value]) -> Option<BTreeSet<String>> {
    let last = frames
        .iter()
        .filter(|f| f["type"] == "snapshot" && f["last"] == true)
        .max_by_key(|f| f["seq"].as_u64())?;
    let last_seq = last["seq"].as_u64()?;
    let first_seq = last_seq.checked_sub(last["part"].as_u64()?)?;
    let mut names = BTreeSet::new();
    for seq in first_seq..=last_seq {
        let part = frames
            .iter()
            .find(|f| f["type"] == "snapshot" && f["seq"].as_u64() == Some(seq))?;
        for d in part["devices"].as_array()? {
            names.insert(d["ep"].as_str()?.to_owned());
        }
    }
    Some(names)
}

#[actix_rt::test]
async fn platform_link_sends_a_fresh_snapshot_of_every_registration_after_an_overflow() {
    let sim = PlatformSim::start("127.0.0.1:0", None);
    let (registry, reader, _dir) = start_registry();
    let (snapshot, mut stall) = StallingSnapshot::new(reader.clone());
    let mut settings = coap_gateway::config::PlatformConfig::default().link_settings("test-gw");
    settings.url = sim.url();
    settings.reconnect_max = Duration::from_secs(1);
    let arbiter = Arbiter::new();
    let link = PlatformLink::start_on(&arbiter.handle(), settings, snapshot, None);
    registry
        .send(SubscribeFeed(link.clone().recipient()))
        .await
        .unwrap();
    // The link has connected and taken its (empty) snapshot; its thread is stalled now.
    assert!(stall.entered().await, "the link connected");

    let ids = register_many(&registry, DEVICES).await;
    for id in &ids[..100] {
        registry
            .send(Remove::by_gateway(*id))
            .await
            .unwrap()
            .unwrap();
    }
    stall.release();

    let expected: BTreeSet<String> = reader.snapshot().iter().map(|r| r.ep.to_string()).collect();
    assert_eq!(expected.len(), DEVICES - 100);
    let deadline = Instant::now() + WAIT;
    loop {
        let frames = sim.frames();
        let hellos = frames.iter().filter(|f| f["type"] == "hello").count();
        if hellos >= 2 && newest_snapshot(&frames).as_ref() == Some(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second hello + whole snapshot of the registry ({hellos} hellos, {} frames; newest whole snapshot: {:?} devices)",
            frames.len(),
            newest_snapshot(&frames).map(|s| s.len())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A platform applying the frames in seq order holds the registry (the acked snapshot of
    // the first session, read after the burst was numbered, no longer undoes it).
    let mirrored: BTreeSet<String> = mirror_in_seq_order(&sim.frames()).into_keys().collect();
    assert_eq!(
        mirrored, expected,
        "the platform's view by seq is the registry"
    );
    let first_snapshot_devices = sim
        .frames()
        .iter()
        .find(|f| f["type"] == "hello")
        .map(|h| h["devices"].as_u64().unwrap())
        .unwrap();
    assert_eq!(
        first_snapshot_devices, 0,
        "the first snapshot was taken before the burst"
    );
    // Acked mode re-sends on the new connection what the old one left unacknowledged:
    // the same seq twice is one event.
    let registered_events: BTreeSet<u64> = sim
        .frames()
        .iter()
        .filter(|f| f["type"] == "device_registered")
        .map(|f| f["seq"].as_u64().expect("acked mode numbers every event"))
        .collect();
    assert!(
        registered_events.len() <= EVENT_BACKLOG,
        "{} distinct device_registered events: more than the feed's bound queued",
        registered_events.len()
    );
    let stats = link.send(GetLinkStats).await.unwrap();
    assert!(stats.resyncs >= 1, "{stats:?}");
    arbiter.stop();
}

// ----- Executer: command results wait for a full link mailbox ----------------------------------

struct NoDevice;

impl RequestHandler for NoDevice {
    fn handle(&self, _: InboundRequest) -> HandlerFuture {
        Box::pin(async { OutboundResponse::new(Code::NOT_FOUND) })
    }
}

/// Stands in for PlatformLink: a small mailbox, counts the results it receives.
struct ResultSink {
    capacity: usize,
    results: Arc<AtomicUsize>,
}

impl Actor for ResultSink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.capacity);
    }
}

impl Handler<SendFrame> for ResultSink {
    type Result = ();
    fn handle(&mut self, SendFrame(frame): SendFrame, _: &mut Context<Self>) {
        if let OutboundFrame::CommandResult(_) = frame {
            self.results.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Handler<Block> for ResultSink {
    type Result = ();
    fn handle(&mut self, block: Block, _: &mut Context<Self>) {
        let _ = block.entered.send(());
        let _ = block.release.recv_timeout(Duration::from_secs(30));
    }
}

#[actix_rt::test]
async fn command_results_refused_by_a_full_link_mailbox_wait_and_all_arrive() {
    const CAPACITY: usize = 16;
    const COMMANDS: usize = 500;
    let endpoint = Endpoint::bind(
        &["127.0.0.1:0".parse().unwrap()],
        TransmissionParams::default(),
        Arc::new(NoDevice),
    )
    .await
    .unwrap();
    let (_registry, reader, _dir) = start_registry();
    let results = Arc::new(AtomicUsize::new(0));
    let arbiter = Arbiter::new();
    let sink = {
        let results = results.clone();
        ResultSink::start_in_arbiter(&arbiter.handle(), move |_| ResultSink {
            capacity: CAPACITY,
            results,
        })
    };
    let settings = ExecuterSettings {
        default_timeout: Duration::from_secs(1),
        max_in_flight: 64,
        send_to_offline: false,
        dedup_window: Duration::from_secs(60),
    };
    let executer = executer::start(
        settings,
        reader,
        endpoint.client(),
        Some(sink.clone().recipient()),
    );
    let release = stall(&sink);
    for i in 0..COMMANDS {
        // Unknown devices: each is answered at once, so results come as fast as commands.
        let command: Command = serde_json::from_value(serde_json::json!({
            "id": format!("c{i}"), "ep": "nobody", "method": "GET", "path": "/x",
        }))
        .unwrap();
        executer.do_send(PlatformCommand {
            command,
            received_at_ms: 0,
        });
    }
    let stats = executer.send(GetExecuterStats).await.unwrap();
    assert_eq!(stats.results, COMMANDS as u64);
    assert_eq!(
        stats.results_pending,
        COMMANDS - CAPACITY,
        "the stalled sink's mailbox took exactly its capacity: {stats:?}"
    );
    assert_eq!(stats.results_dropped, 0);
    release.send(()).unwrap();
    let deadline = Instant::now() + WAIT;
    while results.load(Ordering::SeqCst) < COMMANDS {
        assert!(Instant::now() < deadline, "results lost: {results:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        results.load(Ordering::SeqCst),
        COMMANDS,
        "each result exactly once"
    );
    let stats = executer.send(GetExecuterStats).await.unwrap();
    assert_eq!(stats.results_pending, 0);
    assert!(stats.results_deferred >= (COMMANDS - CAPACITY) as u64);
    arbiter.stop();
}
